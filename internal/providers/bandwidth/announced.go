package bandwidth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// This file is mode announced: the page "Transfer active Call" (notes
// §3.5, §8.1). A is the caller's call, B the new leg the transfer creates.

// locateAnnounced checks that A can be transferred: the page requires an
// active call.
func (c *Client) locateAnnounced(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	const op = "bandwidth.locate"
	id := t.Request.Call.CallID
	a, err := c.getCall(ctx, id)
	if err != nil {
		return orchestrator.Legs{}, err
	}
	if a.state() != stateActive {
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotActive,
			fmt.Errorf("call %s is %q; only an active call can be transferred", id, a.state()))
	}
	// The bridge the caller shares with the agent, if any: a failed
	// transfer may give the caller back out of it, alone (callerAlone),
	// and the call it shared it with is where Unhold puts it back. The
	// request names no agent: the bridge's other call is the one the
	// caller was talking to when the transfer was asked for, and putting
	// the caller back with it, only while it is still in that bridge, is
	// undoing the transfer, as an attended one is undone.
	legs := orchestrator.Legs{Caller: orchestrator.LegRef{CallID: id, BridgeID: a.bridgeID()}}
	if b1 := a.bridgeID(); b1 != "" {
		br, err := c.getBridge(ctx, b1)
		if err != nil {
			return orchestrator.Legs{}, err
		}
		if others := slices.DeleteFunc(slices.Clone(br.CallIDs), func(m string) bool { return m == id }); len(others) == 1 {
			legs.Agent = orchestrator.LegRef{CallID: others[0]}
		}
	}
	return legs, nil
}

// restoreAnnounced puts a caller the platform gave back alone, out of the
// bridge it shared with the agent (callerAlone), back into that bridge
// with the agent's call, audio on: the bridge update unholdAttended sends.
// Only while the agent's call is live in that bridge still: a caller is
// never joined to a bridge the agent has left (hung up, or put elsewhere
// by the client's application), which is refused with KindCallNotActive,
// so that the outcome says the caller was not given back, and why. A
// caller in its bridge again already is success; one in another bridge,
// or transferring again, is someone else's doing, and is left alone.
func (c *Client) restoreAnnounced(ctx context.Context, t *orchestrator.Transfer) error {
	const op = "bandwidth.unhold"
	a, g, b1 := t.Legs.Caller.CallID, t.Legs.Agent.CallID, t.Legs.Caller.BridgeID
	if g == "" || b1 == "" {
		return orchestrator.E(op, orchestrator.KindCallNotActive,
			fmt.Errorf("the caller's call %s shared no bridge with one other call when the transfer began: there is no one to give it back to", a))
	}
	ac, err := c.getKnownCall(ctx, a)
	if err != nil {
		return err
	}
	switch {
	case ac.ended():
		return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("the caller's call %s has ended", a))
	case ac.bridgeID() == b1:
		return nil
	case ac.bridgeID() != "" || ac.state() != stateActive:
		return orchestrator.E(op, orchestrator.KindCallNotActive,
			fmt.Errorf("the caller's call %s is %q in bridge %q: moved on since it was given back, it is left there", a, ac.state(), ac.bridgeID()))
	}
	agentLeft := func() error {
		gc, err := c.getKnownCall(ctx, g)
		if err != nil {
			return err
		}
		if gc.ended() || gc.bridgeID() != b1 {
			return orchestrator.E(op, orchestrator.KindCallNotActive,
				fmt.Errorf("the agent's call %s is %q and no longer in bridge %s: the caller cannot be given back to the agent", g, gc.state(), b1))
		}
		return nil
	}
	if err := agentLeft(); err != nil {
		return err
	}
	err = c.updateBridge(ctx, "unhold", b1, bridgeBody{CallIDs: members(a, g), BridgeAudio: audioOn(true)})
	if err == nil {
		return nil
	}
	if k := orchestrator.KindOf(err); k == orchestrator.KindProviderUnavailable || k == orchestrator.KindProviderAuth {
		return err // the engine retries, or the cause is ours
	}
	// Refused: the agent may have left between the read and the update
	// (the bridge completed, or the call ended). Said so when it shows;
	// otherwise the refusal stands, and the engine sends it again.
	if lerr := agentLeft(); lerr != nil && orchestrator.KindOf(lerr) == orchestrator.KindCallNotActive {
		return lerr
	}
	return err
}

// transferBody maps the request onto the page's fields: exactly the
// options asked for, nothing invented, nothing dropped.
func (c *Client) transferBody(t *orchestrator.Transfer) transferBody {
	r := &t.Request
	b := transferBody{State: stateTransferring, TransferTo: r.Target, TransferCallerID: r.CallerID,
		CallbackURL: c.callbackURL(t.ID)}
	if w := r.Whisper; w != nil {
		b.WhisperAudio = &audio{Sentence: w.Sentence, FileURL: w.FileURL, Gender: w.Gender, Locale: w.Locale, Voice: w.Voice}
	}
	if rec := r.Recording; rec != nil {
		b.RecordingEnabled, b.RecordingFileFormat = rec.Enabled, rec.FileFormat
	}
	if d := r.Diversion; d != nil {
		b.DiversionTreatment, b.DiversionReason = d.Treatment, d.Reason
	}
	return b
}

// dialAnnounced transfers A. The transfer is not idempotent: a repeated
// dial step (after a restart) and a transfer whose answer was lost first
// look for the B-leg an earlier attempt created, and never transfer twice.
func (c *Client) dialAnnounced(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	// The engine sends it once; a lost answer is found again by reading
	// A's transfer (findTransferLeg), here or when watching.
	var cr created
	err := c.do(ctx, request{op: "transfer", method: http.MethodPost, path: "/calls/" + seg(t.Legs.Caller.CallID),
		body: c.transferBody(t), secrets: c.callbackSecrets(t.ID)}, &cr)
	if err == nil && cr.ID == t.Legs.Caller.CallID {
		// The Location names the call the request updated, as a generic
		// REST layer writes one, not the new leg (which the notes pin by
		// SDK fixtures only). Taken for the leg, the caller's own call,
		// read transferring, was a live consult: the transfer reported
		// completed at its first reading while the target still rang. It
		// tells no more than an answer without a Location: the leg's id
		// is unknown, and looked for.
		err = orchestrator.E("bandwidth.transfer", orchestrator.KindProviderUnavailable,
			fmt.Errorf("POST /calls/%s was answered with a Location naming that call, not the new leg: the new leg's id is unknown", cr.ID))
	}
	if err == nil {
		return orchestrator.LegRef{CallID: cr.ID}, nil
	}
	if unknownOutcome(err) {
		if b, _, ferr := c.findTransferLeg(ctx, t); ferr == nil && b != "" {
			return orchestrator.LegRef{CallID: b}, nil
		}
	}
	return orchestrator.LegRef{}, err
}

// skewMargin bounds how much earlier than the transfer, by transferd's
// clock, a B-leg may have started by Bandwidth's, when no callbackUrl
// names it: the two clocks are not the same, and a B-leg missed keeps
// ringing. Older legs are excluded by it, by the caller's own startTime
// (the platform's clock), and by being ended (searchTransferLeg).
const skewMargin = time.Minute

// findTransferLeg reads A and returns the B-leg of A's transfer to the
// target ("" when none is found) and A as read.
func (c *Client) findTransferLeg(ctx context.Context, t *orchestrator.Transfer) (string, *apiCall, error) {
	a, err := c.getCall(ctx, t.Legs.Caller.CallID)
	if err != nil {
		return "", nil, err
	}
	id, err := c.searchTransferLeg(ctx, t, a)
	return id, a, err
}

// searchTransferLeg looks for the B-leg of A's transfer, A being read
// already. Catapult's call object names no B-leg: a callback posted to
// this transfer's callbackUrl named it (only our leg posts there), or it
// is found in the listing of calls to the target: by the callbackUrl
// transferd sent, which names this transfer and nothing else, whichever
// replica's public URL it starts with (namesTransfer); without one
// (no PublicURL), as the live outbound call to the target from a number
// the transfer may show (fromMatches) that started after A did, both by
// Bandwidth's clock (transferd's clock is another one: skewMargin). A live
// leg only: an ended one to the same target may be an earlier attempt's,
// and taking it for ours would report its end and leave ours ringing.
// Another transfer to a queue's number from the same number is as good a
// match, and polling cannot tell them apart: when two legs match, none is
// taken, and a reading of an A read active says it cannot tell.
//
// Only an A that names another target shows that our transfer did not
// happen; with a callbackUrl, an A that reads "active" without transferTo
// may be a transfer already connected, or failed and given back, on a
// platform that shows transferTo only while transferring, or never (notes
// §12.4: A "may expose transferTo"), so the B-leg is looked for all the
// same: the callbackUrl names our leg and no other. Polling, it is looked
// for only while A shows our transfer (transferring, or transferTo naming
// the target): another transfer to the same target (a queue's number) is
// otherwise as good a match, and taking its leg for ours would report its
// caller's call, or hang it up. So a platform that hides transferTo loses
// a lost answer's leg when polling: TRANSFERD_PUBLIC_URL avoids it. The
// outcome then says it cannot be known, while a leg that may be ours is
// live (observeAnnounced).
func (c *Client) searchTransferLeg(ctx context.Context, t *orchestrator.Transfer, a *apiCall) (string, error) {
	if elsewhere(a, t) {
		return "", nil
	}
	// named is a call a callback named that cannot be read.
	named := ""
	if id := c.causes.leg(t.ID); id != "" && id != a.ID {
		// A callback to this transfer's URL named it. The URL's token
		// says the callback is the platform's, not which call it speaks
		// of: a call that can be read must carry this transfer's
		// callbackUrl, or it is not taken (a replayed or forged callback
		// naming another call would have the transfer follow that call).
		// One not readable (yet) is taken on the callback's word, the
		// only evidence of a leg the platform does not list, but only
		// when the listing shows no leg of ours: a callback naming a call
		// the platform never made, its hangup cause with it, had the
		// transfer report the consult ended (busy), and the caller held,
		// while its own leg, listed, had connected the caller to the
		// target.
		switch b, err := c.getCall(ctx, id); {
		case err != nil:
			named = id
		case c.namesTransfer(t.ID)(b.CallbackURL):
			return id, nil
		}
	}
	byURL := c.publicURL != ""
	if named != "" && !byURL {
		return named, nil
	}
	if !byURL && a.state() != stateTransferring && a.TransferTo != t.Request.Target {
		return "", nil
	}
	calls, err := c.callsTo(ctx, t.Request.Target, t.CreatedAt.Add(-skewMargin))
	if err != nil {
		if named != "" {
			return named, nil
		}
		return "", err
	}
	ours := c.namesTransfer(t.ID)
	found := ""
	for i := range calls {
		b := &calls[i]
		if byURL {
			if b.ID != a.ID && ours(b.CallbackURL) {
				return b.ID, nil
			}
			continue
		}
		if mayBeOurs(b, a, t) {
			if found != "" {
				// Two legs may be ours (callers who called one number,
				// on a platform that shows it as the legs' from): taking
				// either could report, or hang up, another caller's.
				return "", nil
			}
			found = b.ID
		}
	}
	if byURL {
		return named, nil
	}
	return found, nil
}

// mayBeOurs reports whether b, listed among the calls to t's target, may
// be the B-leg of t's transfer of a, as polling tells: a live outbound
// call to the target from the number the transfer shows, started since.
func mayBeOurs(b, a *apiCall, t *orchestrator.Transfer) bool {
	return b.ID != a.ID && b.outbound() && b.To == t.Request.Target && !b.ended() && fromMatches(b, a, t) &&
		startedSince(b, a, t.CreatedAt.Add(-skewMargin))
}

// mayHaveTaken reports whether t's transfer of a, whose answer was lost
// and which a does not show, may have connected a to the target: the
// listing shows a leg that may be ours (mayBeOurs). A listing that shows
// none shows it did not, since a connected B-leg is live, and a reading
// the engine trusts is taken a visibility window after the transfer was
// sent, when the platform lists it; one that shows some cannot tell ours
// from another transfer's (searchTransferLeg).
func (c *Client) mayHaveTaken(ctx context.Context, t *orchestrator.Transfer, a *apiCall) (bool, error) {
	calls, err := c.callsTo(ctx, t.Request.Target, t.CreatedAt.Add(-skewMargin))
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(calls, func(b apiCall) bool { return mayBeOurs(&b, a, t) }), nil
}

// mayHaveMade reports whether the listing of calls to t's target shows a
// call that may have been the leg t's transfer of a created, live or
// ended: mayBeOurs, but for its state. Polling, an ended A with a lost
// answer and no such call made no leg; with one, it cannot be told from
// another transfer's, or an earlier attempt's.
func (c *Client) mayHaveMade(ctx context.Context, t *orchestrator.Transfer, a *apiCall) (bool, error) {
	calls, err := c.callsTo(ctx, t.Request.Target, t.CreatedAt.Add(-skewMargin))
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(calls, func(b apiCall) bool {
		return b.ID != a.ID && b.outbound() && b.To == t.Request.Target && fromMatches(&b, a, t) &&
			startedSince(&b, a, t.CreatedAt.Add(-skewMargin))
	}), nil
}

// fromMatches reports whether B shows a number our transfer may have shown
// the target. Which one is inferred (notes §12.4), and the simulator plays
// each reading (TransferLegFrom): transferCallerId as given; without it,
// "the number of the original incoming call", the caller's own number or
// the one it called; and a "private" one may be shown withheld
// ("anonymous", "restricted", no number at all). A leg excluded here that
// was ours would have a polling reading take a connected caller for one
// given back. A number not shown does not exclude a leg.
func fromMatches(b, a *apiCall, t *orchestrator.Transfer) bool {
	if b.From == "" {
		return true
	}
	switch want := t.Request.CallerID; {
	case want == "":
		return a.From == "" || b.From == a.From || b.From == a.To
	case strings.EqualFold(want, "private"):
		return !strings.ContainsAny(b.From, "0123456789")
	default:
		return b.From == want
	}
}

// elsewhere reports whether A names another target than t's: its latest
// transfer was not ours.
func elsewhere(a *apiCall, t *orchestrator.Transfer) bool {
	return a.TransferTo != "" && a.TransferTo != t.Request.Target
}

// startedSince reports whether b started no earlier than a (both by
// Bandwidth's clock) and no earlier than floor (transferd's clock, which
// skewMargin already widened). Timestamps that do not parse do not
// exclude a leg.
func startedSince(b, a *apiCall, floor time.Time) bool {
	bs, ok := b.started()
	if !ok {
		return true
	}
	if as, ok := a.started(); ok && bs.Before(as.Truncate(time.Second)) {
		return false
	}
	return !bs.Before(floor)
}

// observeAnnounced reads A, then B. The order matters: when B fails, the
// platform may end A at the same moment; reading A first means that an
// ended A next to a still ringing B was the caller hanging up.
func (c *Client) observeAnnounced(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Observation, error) {
	var obs orchestrator.Observation
	a, err := c.getKnownCall(ctx, t.Legs.Caller.CallID)
	if err != nil {
		return obs, err
	}
	aGone := a.ended()

	id := t.Legs.Consult.CallID
	legUnknown := id == "" && dialled(t)
	if legUnknown && a != nil {
		// The transfer's answer was lost: the listing names B.
		if id, err = c.searchTransferLeg(ctx, t, a); err != nil {
			return obs, err
		}
		obs.ConsultLeg.CallID = id
	}
	b, cause, causeErr, err := c.observeBLeg(ctx, t, id, &obs)
	if err != nil {
		return obs, err
	}
	if !aGone && a.live() && b != nil && b.ended() && b.ActiveTime != "" {
		// A read active or transferring before B read ended after its
		// answer: A may have been connected to B then (the platform
		// bridges them as B answers, and a connected A reads "active" or
		// "transferring": notes §12.8 unknown 2), and the end of a
		// connected B ends A with it (notes §12.3). Read A again, after
		// B, so that a caller hung up with the target is not taken for a
		// caller given back, nor, A read transferring while B rang and
		// answered and hung up before B was read, for a caller still held
		// whom the target hung up on before any bridge: that reading had
		// a transfer the platform carried out reported failed,
		// target_hung_up (unverified), where bridgedBeforeEnd, on A read
		// ended, shows it completed.
		again, err := c.getKnownCall(ctx, t.Legs.Caller.CallID)
		if err != nil {
			return obs, err
		}
		a, aGone = again, again.ended()
	}
	// The dial's answer was lost, and an active A shows no transfer: given
	// back after a failed one, never transferred, or connected to B on a
	// platform that reads a connected A "active" and hides transferTo
	// once transferring is over (both guesses, notes §12.8 unknown 2).
	// Polling cannot find B without A naming it (searchTransferLeg), but
	// a listing with no leg that may be ours shows A is not connected to
	// one; a listing with one cannot tell (mayHaveTaken).
	if causeErr != nil && (aGone || errors.Is(causeErr, errHistoryLags)) {
		// Both calls ended and why B did is unknown: the caller who hung
		// up (B cancelled with it) and the platform ending the caller's
		// call because B failed (busy, rejected, no answer) look alike
		// but for B's cause. Taken for untold, the reading blamed the
		// caller (caller_hung_up) for a busy target. A history that shows
		// B's end not yet is waited out with A read live too: the platform
		// ends A a moment after B, and a reading between the two, taken
		// for a leg that told nothing, had a busy target reported
		// consult_failed, "Bandwidth did not say why"; it lasts a
		// visibility window at most (historyLags).
		return obs, orchestrator.E("bandwidth.observe", orchestrator.KindProviderUnavailable,
			fmt.Errorf("the transfer's leg %s ended, and why could not be read: %w", id, causeErr))
	}
	if aGone && legUnknown && id == "" && !elsewhere(a, t) {
		// The transfer's answer was lost, A has ended, and no leg of the
		// transfer is found. Polling looks for a live one only (an ended
		// leg to the target may be an earlier attempt's), so a transfer
		// the platform applied, and ended with A when the target was busy,
		// left none: taken for the caller gone, the reading blamed the
		// caller (caller_hung_up, verified) for a busy target. Within the
		// visibility window of the dial's answer the leg may not be
		// listed yet: unknown. Past it, a listing that shows no call to
		// the target that may be the transfer's leg, live or ended, shows
		// the transfer made none, and A's end was not the transfer's (the
		// caller hung up, as before); with a callbackUrl, the search found
		// none by it. One that may be, polling cannot tell from another
		// transfer's, nor why it ended: no reading can show why A did.
		if c.young(c.dialAnswered(t)) {
			return obs, orchestrator.E("bandwidth.observe", orchestrator.KindProviderUnavailable,
				errors.New("the transfer's answer was lost and the caller's call ended, and the transfer's leg is not found yet: why the caller's call ended is unknown"))
		}
		if c.publicURL == "" {
			made, err := c.mayHaveMade(ctx, t, a)
			if err != nil {
				return obs, err
			}
			if made {
				obs.Caller, obs.Undecidable = orchestrator.CallerGone, true
				obs.Detail = appendDetail(obs.Detail, "the transfer's answer was lost, the caller's call ended, and a call to the target that may have been "+
					"the transfer's leg is listed: without TRANSFERD_PUBLIC_URL no call object names the transfer's leg, so whether the caller hung up, "+
					"Bandwidth ended the call because the transfer failed, or the caller was connected to the target first, no reading can show")
				return obs, nil
			}
		}
	}
	if aGone && id != "" && b == nil && !t.Seen.ConsultEnded && (cause == "" || plainEnd(cause)) {
		// B has never been read (a leg the platform lists late, or never
		// indexes: a failed one), and nothing told why it ended: no
		// callback, or one with a plain end (ORIGINATOR_CANCEL, which a
		// caller's hang-up gives B, and a platform may give a leg it gave
		// up ringing, its timeout callback lost: bwsim TimeoutHangupCause),
		// whose history cannot be read with it. Why A ended is unknown:
		// the caller who hung up while B rang, the platform ending A
		// because B failed (busy, rejected, no answer), and a caller who
		// talked to the target and then hung up read alike. Taken for the
		// caller gone, the reading blamed the caller (caller_hung_up,
		// verified). Within the visibility window of the dial's answer B
		// may still be read, and tell: the reading is unknown until then.
		// Past it, no reading can tell: the outcome says so (final,
		// unverified), so that a leg never indexed keeps no obligation
		// open for good.
		if c.young(c.dialAnswered(t)) {
			return obs, orchestrator.E("bandwidth.observe", orchestrator.KindProviderUnavailable,
				fmt.Errorf("the caller's call ended, and the transfer's leg %s cannot be read yet (its callbacks told %q): why the caller's call ended is unknown", id, cause))
		}
		obs.Caller, obs.Undecidable = orchestrator.CallerGone, true
		obs.Detail = appendDetail(obs.Detail, "the caller's call ended, and the transfer's leg "+id+" has not been readable since the transfer: "+
			"whether the caller hung up, Bandwidth ended the call because the transfer failed, or the caller was connected to the target first, "+
			"no reading can show")
		return obs, nil
	}
	undecidable := false
	if !aGone && a.state() == stateActive && legUnknown && id == "" && !elsewhere(a, t) && c.publicURL == "" {
		if undecidable, err = c.mayHaveTaken(ctx, t, a); err != nil {
			return obs, err
		}
	}

	switch {
	case aGone && (targetFailed(cause) || failedUnanswered(b, cause)):
		// B failed and the platform ended the caller's call with it (what
		// Catapult does to a failed BXML transfer). Not a hang-up by the
		// caller: the engine reports the consult's end reason.
		obs.Caller = orchestrator.CallerGone
		obs.Detail += "; Bandwidth ended the caller's call when the transfer failed"
	case aGone && bridgedBeforeEnd(t, a, b):
		// B answered while A was still up, with no whisper to play first:
		// the platform connected them then, and the call has ended since.
		obs.Caller, obs.CallerEnded = orchestrator.CallerTransferred, true
	case aGone:
		obs.Caller = orchestrator.CallerGone
	case b != nil && b.live():
		// B answered: the platform connected A and B.
		obs.Caller = orchestrator.CallerTransferred
	case undecidable:
		// A leg that may be ours is live: no reading can tell whether it
		// is connected to A. Say so, never "restored".
		obs.Caller, obs.Undecidable = orchestrator.CallerUnknown, true
		obs.Detail = appendDetail(obs.Detail, "the transfer's answer was lost, the caller's call reads active showing no transfer, "+
			"as it may both once given back and once connected to the target, and a live call to the target that may be its leg is listed: "+
			"without TRANSFERD_PUBLIC_URL no call object names the transfer's leg")
	case a.state() == stateActive && callerAlone(t, a):
		// Given back after a failed transfer (TransferFailure restore),
		// out of the bridge it shared with the agent: up, but with no one.
		// Taken for connected, the outcome said the caller restored while
		// the caller heard silence. The request names no agent, and the
		// platform's part in the bridge is a guess (a transfer takes the
		// call out of it in bwsim; nothing documents transferring a
		// bridged call). The engine sends Unhold, which puts the caller
		// back with the agent's call if it is still in the bridge, and
		// reports the caller not restored, and why, when it is not.
		// The agent's call, when Locate knew it, is where Unhold puts the
		// caller back (restoreAnnounced), while it is still in the bridge.
		// The detail goes into the outcome decided on this reading: said
		// so, it stays true once the caller is back with the agent.
		obs.Caller, obs.CallerAlone = orchestrator.CallerUnknown, t.Legs.Agent.CallID != ""
		if obs.CallerAlone {
			obs.Detail = appendDetail(obs.Detail, "the caller's call was given back out of bridge "+t.Legs.Caller.BridgeID+
				", which it shared with the agent when the transfer began, alone")
		} else {
			obs.Detail = appendDetail(obs.Detail, "the caller's call is up but no longer in bridge "+t.Legs.Caller.BridgeID+
				", which it shared with the agent when the transfer began: it is connected to no one")
		}
	case a.state() == stateActive && t.Legs.Agent.CallID != "" && a.bridgeID() == t.Legs.Caller.BridgeID:
		// In the bridge it shared with the agent: put back there
		// (restoreAnnounced), or kept there by a platform that does not
		// take a transferred call out of its bridge (the other side of
		// that guess). With the agent only if the agent's call is in it
		// still, audio on, as an attended unhold is read: the agent who
		// hung up while the target rang, or right after the caller was
		// put back, left the caller alone in it, which was reported
		// restored. An ended call leaves its bridge.
		br, err := c.getBridge(ctx, a.bridgeID())
		if err != nil {
			return obs, err
		}
		if br.has(t.Legs.Agent.CallID) && bool(br.BridgeAudio) {
			obs.Caller = orchestrator.CallerConnected
			break
		}
		obs.Caller = orchestrator.CallerUnknown
		obs.Detail = appendDetail(obs.Detail, "the caller's call is in bridge "+br.ID+" without the agent's call "+t.Legs.Agent.CallID+
			", or with its audio off: it is connected to no one")
	case a.state() == stateActive:
		obs.Caller = orchestrator.CallerConnected
	case a.state() == stateTransferring:
		// The caller hears ringing while the platform rings the target.
		obs.Caller = orchestrator.CallerHeld
	default:
		obs.Caller = orchestrator.CallerUnknown
	}
	return obs, nil
}

// callerAlone reports whether A, read active, has left the bridge it was
// in when the transfer began and is in none: on the platform's side of
// the guess that takes a transferred call out of its bridge and gives it
// back alone when the transfer fails. One the client's application put
// in another bridge since is with someone, as before; one in its bridge
// still (the other side of the guess), or never bridged, is connected.
func callerAlone(t *orchestrator.Transfer, a *apiCall) bool {
	return t.Legs.Caller.BridgeID != "" && a.bridgeID() == ""
}

// dialAnswered is when t's dial was answered (its last dial step ended),
// from which the platform may take the visibility window to show the
// leg it created: the dial step's end (orchestrator.Transfer.StepEnd), as
// the engine counts its own windows of the dial. A dial step a stopped
// process left unfinished counts until the step timeout after it began,
// as the engine counts it: its request may have gone out, and been
// answered, as late as that (the adapter's retries). Counted from the
// step's start, a leg the platform could not read yet was judged past
// its window before the engine's: the caller gone, undecidable, while
// the leg could still tell. Sent.Dial, when the dial was decided, is
// taken when later than that step's end, as the NetSapiens adapter takes
// it: a dial decided again after an earlier dial step ended unsent, its
// own step not recorded yet, came to be no earlier than its decision, and
// counted from the earlier step's end its leg was judged past its window
// while it could still tell. Zero when no dial was sent.
func (c *Client) dialAnswered(t *orchestrator.Transfer) time.Time {
	at := t.Sent.Dial
	if at.IsZero() {
		return at
	}
	if end := t.StepEnd(orchestrator.StepDial, c.stepTimeout); end.After(at) {
		at = end
	}
	return at
}

// young reports whether something that came to be at since may not show
// yet: within the visibility window (Config.VisibilityWindow).
func (c *Client) young(since time.Time) bool {
	return !since.IsZero() && c.now().Before(since.Add(c.window))
}

// appendDetail joins a reading's details with "; ".
func appendDetail(detail, more string) string {
	if detail == "" {
		return more
	}
	return detail + "; " + more
}

// bridgedBeforeEnd reports whether the ended A was connected to B before
// it ended: B was answered, and A ended after B's answer by the
// platform's clock, so A was still transferring to B when B answered, and
// with no whisper "when the final destination answers the call … the two
// will be bridged together" (howto/callScreen.md). A whisper is played to
// B first and the bridge waits for its end, which the call objects do not
// show; times that do not parse, or that do not tell the order (the same
// second, as the call object gives them), tell nothing either. So a
// caller who hung up as the target answered is not taken for transferred.
// Nor is a call this transfer may have hung up itself: a hang-up of B
// sent while it rang and applied late, after B answered, ends A too (the
// platform ends a transfer as a whole), a later second than B's answer,
// and nothing shows whose end it was.
func bridgedBeforeEnd(t *orchestrator.Transfer, a, b *apiCall) bool {
	if t.Request.Whisper != nil || !t.Sent.Hangup.IsZero() || a == nil || b == nil || elsewhere(a, t) {
		return false
	}
	answered, err1 := time.Parse(time.RFC3339, b.ActiveTime)
	ended, err2 := time.Parse(time.RFC3339, a.EndTime)
	return err1 == nil && err2 == nil && ended.After(answered)
}

// observeBLeg reads B (when its id is known) into obs, and returns it (nil
// when it cannot be read) and why it ended: its event history, or, when
// it cannot be read, the cause a callback reported. causeErr is the error
// of an ended B's event history that could not be read (the cause is then
// unknown).
func (c *Client) observeBLeg(ctx context.Context, t *orchestrator.Transfer, id string, obs *orchestrator.Observation) (b *apiCall, cause string, causeErr, err error) {
	if id == "" {
		return nil, "", nil, nil
	}
	b, err = c.getConsultLeg(ctx, t, id)
	if err != nil {
		return nil, "", nil, err
	}
	switch {
	case b == nil:
		// Not readable (yet, or any more): a callback may have said how it
		// ended, or a reading shown it ended (getConsultLeg); otherwise the
		// engine decides.
		if cause = c.causes.get(t.ID, id); cause != "" || t.Seen.ConsultEnded {
			consultEnded(obs, nil, cause)
		}
	case b.state() == stateStarted:
		obs.Consult = orchestrator.ConsultRinging
	case b.live():
		obs.Consult = orchestrator.ConsultAnswered
		obs.ConsultLegs = 1
	default:
		cause, causeErr = c.endCause(ctx, t, id)
		consultEnded(obs, b, cause)
	}
	return b, cause, causeErr, nil
}

// hangupAnnounced cancels a B-leg that still rings. An ended B is success.
// An answered B is left alone: it carries the caller, and the platform
// ends a transfer as a whole, so hanging it up would hang up the caller.
func (c *Client) hangupAnnounced(ctx context.Context, t *orchestrator.Transfer) error {
	id := t.Legs.Consult.CallID
	if id == "" {
		if !dialled(t) {
			return nil
		}
		// The transfer's answer was lost: it may have created a B-leg,
		// which A leads to. A was read before (Locate), and Catapult reads
		// an ended call "completed": a 404 for it says nothing
		// (getKnownCall). Taken for "A is gone, and B with it", the
		// hang-up reported done with B ringing the target. A is read again
		// for a while (readKnown); a 404 that lasts is an unknown outcome,
		// and the engine sends the hang-up again.
		a, err := c.readKnown(ctx, t.Legs.Caller.CallID)
		if err != nil {
			return err
		}
		if id, err = c.searchTransferLeg(ctx, t, a); err != nil {
			return err
		}
		if id == "" {
			return nil
		}
	}
	b, err := c.getCall(ctx, id)
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		return nil
	case err != nil:
		return err
	case b.state() != stateStarted:
		return nil
	}
	return c.hangup(ctx, "hangup", id)
}
