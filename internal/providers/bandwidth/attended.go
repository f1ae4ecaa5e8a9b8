package bandwidth

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
)

// This file is mode attended, the agent consult of notes §8.3, built only
// from documented primitives. A is the caller's call and G the agent's;
// they share bridge b1. The consult puts G and the target's new call T in
// a second bridge b2 while A waits alone, muted, in b1. A bridge holds at
// most two calls and a call is in one bridge only, so every membership
// change is ordered: a call leaves one bridge before it joins another.
//
// Bridge updates send the full membership (callIds), which makes them
// absolute and safe to repeat; creating b2 and T is not, so a repeated or
// lost attempt first looks for what an earlier one created.

// maxCallTimeout is POST /calls' callTimeout maximum in seconds.
const maxCallTimeout = 300

func (c *Client) locateAttended(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	const op = "bandwidth.locate"
	r := &t.Request
	a, err := c.getCall(ctx, r.Call.CallID)
	if err != nil {
		return orchestrator.Legs{}, err
	}
	g, err := c.getCall(ctx, r.Call.AgentCallID)
	if err != nil {
		return orchestrator.Legs{}, err
	}
	var problem string
	switch {
	case a.state() != stateActive:
		problem = fmt.Sprintf("the caller's call %s is %q, not active", a.ID, a.state())
	case g.state() != stateActive:
		problem = fmt.Sprintf("the agent's call %s is %q, not active", g.ID, g.state())
	case a.bridgeID() == "":
		problem = fmt.Sprintf("the caller's call %s is in no bridge; an attended transfer needs caller and agent bridged together", a.ID)
	case a.bridgeID() != g.bridgeID():
		problem = fmt.Sprintf("the caller's call %s (bridge %q) and the agent's call %s (bridge %q) are not bridged together",
			a.ID, a.bridgeID(), g.ID, g.bridgeID())
	}
	if problem != "" {
		return orchestrator.Legs{}, orchestrator.E(op, orchestrator.KindCallNotActive, fmt.Errorf("%s", problem))
	}
	return orchestrator.Legs{
		Caller: orchestrator.LegRef{CallID: r.Call.CallID, BridgeID: a.bridgeID()},
		Agent:  orchestrator.LegRef{CallID: r.Call.AgentCallID},
	}, nil
}

// holdAttended mutes b1: A and G no longer hear each other.
//
// It returns once a read of b1 shows the hold applied. The platform
// answers a bridge update before it applies it, and later updates may be
// applied first: the split (which mutes b1 too, so a reading cannot tell
// the two apart) and even the join, which a hold applied after it would
// mute for good, the caller and the target each hearing nothing. A hold
// not seen applied within leaveWait (the visibility window) is an unknown outcome: the engine
// sends it again, and then waits for readings to settle before it joins.
//
// b1 is known to exist: Locate read it on the caller's call, and Catapult
// keeps a bridge readable once it has completed (state completed), as it
// does a call. A 404 for it says nothing (as getKnownCall's for a call):
// taken for the hold's answer, one such read failed the transfer,
// provider_error, with the caller given back before the target was ever
// called. It is read again while the hold is waited for, and a 404 that
// lasts leaves the hold's outcome unknown.
func (c *Client) holdAttended(ctx context.Context, t *orchestrator.Transfer) error {
	b1 := t.Legs.Caller.BridgeID
	if err := c.updateBridge(ctx, "hold", b1, bridgeBody{BridgeAudio: audioOn(false)}); err != nil {
		return err
	}
	var err error
	applied := c.patiently(ctx, func() bool {
		var b *apiBridge
		b, err = c.getBridge(ctx, b1)
		return (err != nil && !notFound(err)) || (err == nil && !bool(b.BridgeAudio))
	})
	switch {
	case notFound(err):
		return orchestrator.E("bandwidth.hold", orchestrator.KindProviderUnavailable,
			fmt.Errorf("the hold of bridge %s was accepted, and the bridge, which the caller's call names, is not found now: "+
				"whether the hold applied is unknown: %w", b1, err))
	case err != nil:
		return err
	case applied:
		return nil
	case ctx.Err() != nil:
		return orchestrator.E("bandwidth.hold", orchestrator.KindTimeout, ctx.Err())
	}
	return orchestrator.E("bandwidth.hold", orchestrator.KindProviderUnavailable,
		fmt.Errorf("the hold of bridge %s was accepted but not seen applied within %s", b1, c.leaveWait))
}

// dialAttended takes G out of b1, bridges it in a new b2 and creates T
// into b2, where T joins G when it answers. It returns what it got
// (b2 without T) on a later error, so that the compensation can clean up.
func (c *Client) dialAttended(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	r := &t.Request
	a, g, b1 := t.Legs.Caller.CallID, t.Legs.Agent.CallID, t.Legs.Caller.BridgeID
	// The engine sends a dial once; what it creates is found again by
	// the call's tag (the transfer id) and the agent's bridge.
	leg := orchestrator.LegRef{CallID: t.Legs.Consult.CallID, BridgeID: t.Legs.Consult.BridgeID}

	from := r.CallerID
	if from == "" {
		// The consult call's from must be a number the account owns: the
		// one the caller dialled. Locate read A, and Catapult reads an
		// ended call "completed": a 404 for it says nothing (getKnownCall).
		// Taken for the caller gone, it failed the transfer, verified,
		// call_not_found, with the caller up and put back with the agent.
		// Nothing was sent yet: A is read again for a while, and then the
		// dial's outcome is unknown, not the call gone.
		ac, err := c.readKnown(ctx, a)
		if err != nil {
			return leg, err
		}
		from = ac.ownNumber()
	}

	// 1. G leaves b1; A stays there, held.
	if err := c.split(ctx, b1, a, g); err != nil {
		return leg, err
	}

	// 2. b2 with G.
	if leg.BridgeID == "" {
		var cr created
		err := c.whileLeaving(ctx, func() error {
			return c.do(ctx, request{op: "create_bridge", method: http.MethodPost, path: "/bridges",
				body: bridgeBody{BridgeAudio: audioOn(true), CallIDs: members(g)}}, &cr)
		})
		switch {
		case err == nil:
			leg.BridgeID = cr.ID
		case unknownOutcome(err):
			// The bridge may exist: G in a bridge of ours is it. When G
			// cannot be read the outcome stays unknown, and so does the
			// error the engine gets; the hang-up looks again.
			id, ferr := c.agentBridge(ctx, t)
			if ferr != nil || id == "" {
				return leg, err
			}
			leg.BridgeID = id
		default:
			return leg, err
		}
	}

	// 3. T into b2, tagged with the transfer id so it can be found again.
	body := createCallBody{From: from, To: r.Target, BridgeID: leg.BridgeID, CallTimeout: callTimeout(r.ConsultTimeout),
		Tag: t.ID, CallbackURL: c.callbackURL(t.ID), FallbackURL: c.callbackURL(t.ID)}
	if rec := r.Recording; rec != nil {
		body.RecordingEnabled, body.RecordingFileFormat = rec.Enabled, rec.FileFormat
	}
	var cr created
	err := c.do(ctx, request{op: "create_call", method: http.MethodPost, path: "/calls", body: body,
		secrets: c.callbackSecrets(t.ID)}, &cr)
	if err != nil {
		if unknownOutcome(err) {
			if id, ferr := c.findConsultCall(ctx, t); ferr == nil && id != "" {
				leg.CallID = id
				return leg, nil
			}
		}
		return leg, err
	}
	leg.CallID = cr.ID
	return leg, nil
}

// split takes G out of b1 ({"callIds":[A]}, muted). It is not sent
// again blindly, as other bridge updates are: a copy of it still in flight
// (an attempt whose answer was lost, applied late) would land after the
// join, which puts T in b1, and take T out again, muting the caller: a
// transfer that had happened was undone, the target hung up. After an
// attempt whose outcome is unknown, it is sent again only once b1 has
// shown G in it for leaveWait, the time a bridge update is waited for to
// land (whileLeaving). An attempt refused for a passing reason (a 409
// conflict) did nothing, and is sent again as any safe request is.
func (c *Client) split(ctx context.Context, b1, a, g string) error {
	r := request{op: "split", method: http.MethodPost, path: "/bridges/" + seg(b1), body: bridgeBody{CallIDs: members(a), BridgeAudio: audioOn(false)}}
	for try := 1; ; try++ {
		err := c.do(ctx, r, nil)
		switch {
		case err == nil:
			return nil
		case unknownOutcome(err):
			if c.patiently(ctx, func() bool {
				b, rerr := c.getBridge(ctx, b1)
				return rerr == nil && !b.has(g)
			}) {
				return nil // the attempt landed: none other is in flight
			}
		case orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable:
			return err
		}
		if try >= c.attempts || apiclient.Sleep(ctx, apiclient.Backoff(try, c.retryBase, 5*time.Second)) != nil {
			return err
		}
	}
}

// callTimeout is how long T rings: the consult timeout, within POST
// /calls' 1 to 300 seconds. A longer consult_timeout still bounds the
// talk after the answer.
func callTimeout(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return min(max(s, 1), maxCallTimeout)
}

// agentBridge returns b2 when its id was never saved (the answer to the
// dial's POST /bridges was lost): the bridge other than b1 that G is in,
// when it is ours. It is "" when G is in no other bridge (or ended), or
// in one that is not ours, and an error when that cannot be told: a read
// failed, and "unreadable" is never "no bridge", so that the caller
// decides (a hang-up is then tried again, instead of reporting b2 emptied
// while it still holds the agent and refuses every unhold).
//
// Callers ask only once the transfer dialled: only the dial takes G out
// of b1, and nothing but our POST /bridges puts it in a bridge of its own
// while the caller waits. Still, the agent's call is not ours: the
// client's own application may move it (to another customer, once it
// thinks the transfer over), and emptying such a bridge would cut a
// conversation transferd has no part in. So a bridge counts as ours only
// when every call in it is G or a call carrying this transfer's tag (T),
// which is what the dial creates.
//
// G existed before the transfer (Locate read it), and Catapult reads an
// ended call "completed": a 404 for it is unknown too (getKnownCall).
// Taken for "G is in no bridge", it had the hang-up report b2 emptied with
// the agent still in it; with the caller gone, no unhold came to find it
// refused, and the agent stayed alone in b2, on a silent call the platform
// refuses to bridge to anyone else.
func (c *Client) agentBridge(ctx context.Context, t *orchestrator.Transfer) (string, error) {
	g, err := c.getKnownCall(ctx, t.Legs.Agent.CallID)
	if err != nil {
		return "", err
	}
	id := g.bridgeID()
	if id == "" || id == t.Legs.Caller.BridgeID || g.ended() {
		return "", nil
	}
	b, err := c.getBridge(ctx, id)
	if err != nil {
		return "", err
	}
	for _, m := range b.CallIDs {
		if m == g.ID || (m != "" && m == t.Legs.Consult.CallID) {
			continue
		}
		mc, err := c.getCall(ctx, m)
		switch {
		case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
			// A call in a bridge exists: one created so lately that
			// reads do not show it yet. Whose it is stays unknown.
			return "", orchestrator.E("bandwidth.agent_bridge", orchestrator.KindProviderUnavailable,
				fmt.Errorf("call %s in the agent's bridge %s cannot be read yet: %w", m, id, err))
		case err != nil:
			return "", err
		}
		if mc.Tag != t.ID {
			return "", nil // someone else's conversation
		}
	}
	return id, nil
}

// findConsultCall returns the consult call created for t, found by its
// tag among the calls to the target, or "".
func (c *Client) findConsultCall(ctx context.Context, t *orchestrator.Transfer) (string, error) {
	calls, err := c.callsTo(ctx, t.Request.Target, t.CreatedAt.Add(-skewMargin))
	if err != nil {
		return "", err
	}
	for _, call := range calls {
		if call.Tag == t.ID && call.outbound() {
			return call.ID, nil
		}
	}
	return "", nil
}

// namedConsult is the consult of t, whose create answer was lost and
// which the listing does not show, as its callbacks tell: the call they
// named (a callback to t's URL comes from a call of t's, as its token
// says; not which call it speaks of), taken when it reads with t's tag,
// as findConsultCall would (a call the listing shows late); or, when it
// cannot be read (a failed leg the platform never indexes: bwsim
// VanishFailedLegs), no leg, and why it ended when a callback told it
// (told). A call read without t's tag is not taken: a replayed or forged
// callback naming another call would have the join bridge it with the
// caller, and the hang-up end it; one that cannot be read is used for its
// end alone, never joined nor hung up by that id. Both "" when no
// callback named a call, or the one named says nothing.
//
// Without it, a busy target's leg the platform never lists, its create
// answer lost, was judged by the visibility window as a consult that
// never appeared: consult_failed, where its callback said busy.
func (c *Client) namedConsult(ctx context.Context, t *orchestrator.Transfer) (tid, told string, err error) {
	id := c.causes.leg(t.ID)
	if id == "" || id == t.Legs.Caller.CallID || id == t.Legs.Agent.CallID {
		return "", "", nil
	}
	call, err := c.getCall(ctx, id)
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		return "", c.causes.get(t.ID, id), nil
	case err != nil:
		return "", "", err
	case call.Tag == t.ID && call.outbound():
		return id, "", nil
	}
	return "", "", nil
}

// observeAttended reads b1, which shows whom the caller hears, and T.
func (c *Client) observeAttended(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Observation, error) {
	var obs orchestrator.Observation
	a, g, tid := t.Legs.Caller.CallID, t.Legs.Agent.CallID, t.Legs.Consult.CallID
	b1, err := c.getBridge(ctx, t.Legs.Caller.BridgeID)
	if err != nil {
		return obs, err
	}
	var tc *apiCall
	if tid == "" && dialled(t) {
		// The dial's answer was lost: the consult, if it exists, carries
		// our tag. A platform may list a new call only after a while.
		if tid, err = c.findConsultCall(ctx, t); err != nil {
			return obs, err
		}
		if tid == "" {
			var told string
			if tid, told, err = c.namedConsult(ctx, t); err != nil {
				return obs, err
			}
			if told != "" {
				consultEnded(&obs, nil, told)
			}
		}
		obs.ConsultLeg.CallID = tid
	}
	if tid != "" {
		if tc, err = c.getConsultLeg(ctx, t, tid); err != nil {
			return obs, err
		}
		switch {
		case tc == nil:
			// Not readable: not created yet as far as reads go, or gone.
			// Its hangup callback may have said how it ended, or a reading
			// shown it ended (getConsultLeg: ended still); otherwise the
			// engine tells the two apart, by its visibility window.
			if cause := c.causes.get(t.ID, tid); cause != "" || t.Seen.ConsultEnded {
				consultEnded(&obs, nil, cause)
			}
		case tc.state() == stateStarted:
			obs.Consult = orchestrator.ConsultRinging
		case tc.live():
			obs.Consult = orchestrator.ConsultAnswered
		default:
			// A history that cannot be read leaves the cause untold: the
			// caller, held in b1, is given back all the same.
			cause, _ := c.endCause(ctx, t, tid)
			consultEnded(&obs, tc, cause)
		}
		if tc != nil && tc.live() {
			obs.ConsultLegs = 1
		}
		if tc != nil && t.Legs.Consult.BridgeID == "" {
			// b2 unsaved (the process died before the dial's result was
			// saved): T was created into it and names it, until a join
			// moves T into b1. The join needs it.
			if b := tc.bridgeID(); b != t.Legs.Caller.BridgeID {
				obs.ConsultLeg.BridgeID = b
			}
		}
	}
	if obs.Consult == orchestrator.ConsultAnswered && t.State == orchestrator.StateConsulting &&
		t.Request.Completion == orchestrator.CompletionManual && !b1.has(g) {
		// The agent talks to the target in b2, waiting to complete. If the
		// agent hangs up, no one can take the caller back and no one will
		// complete: the engine joins caller and target. This is the only
		// time the agent's call matters (an auto transfer joins them
		// anyway), so the only time it is read. A failed read says
		// nothing, and neither does a 404: G existed before the transfer,
		// and Catapult reads an ended call "completed" (getKnownCall).
		gc, err := c.getKnownCall(ctx, g)
		obs.AgentGone = err == nil && gc.ended()
	}
	switch {
	case !b1.has(a):
		// A call leaves its bridge when it ends. A 404 for it says
		// nothing (getKnownCall).
		ac, err := c.getKnownCall(ctx, a)
		switch {
		case err != nil:
			return obs, err
		case ac.ended():
			obs.Caller = orchestrator.CallerGone
		default:
			obs.Caller = orchestrator.CallerUnknown
			obs.Detail = fmt.Sprintf("the caller's call is no longer in bridge %s", b1.ID)
		}
	case tc != nil && tc.live() && b1.has(tid) && bool(b1.BridgeAudio):
		obs.Caller = orchestrator.CallerTransferred
	case b1.has(g) && bool(b1.BridgeAudio):
		obs.Caller = orchestrator.CallerConnected
	default:
		obs.Caller = orchestrator.CallerHeld
	}
	return obs, nil
}

// completeAttended moves T from b2 to A in b1, unmutes b1 and hangs up G.
func (c *Client) completeAttended(ctx context.Context, t *orchestrator.Transfer) error {
	a, g := t.Legs.Caller.CallID, t.Legs.Agent.CallID
	b1, b2, tid := t.Legs.Caller.BridgeID, t.Legs.Consult.BridgeID, t.Legs.Consult.CallID
	if b2 == "" {
		// Not learnt from T (a reading found T by its tag): the agent's
		// bridge other than b1, when it is ours, or, the agent gone (when
		// the engine joins them for that very reason), T's own.
		var err error
		if b2, err = c.consultBridge(ctx, t); err != nil {
			if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
				// A bridge read 404: not the caller's call, which exists.
				err = orchestrator.E("bandwidth.complete", orchestrator.KindInternal, err)
			}
			return orchestrator.NotSent(err)
		}
	}
	if b2 == "" || tid == "" {
		return orchestrator.NotSent(orchestrator.E("bandwidth.complete", orchestrator.KindInternal,
			fmt.Errorf("the consult leg is not known (call %q, bridge %q)", tid, b2)))
	}
	// 1. T leaves b2 (a call is in one bridge only).
	err := c.updateBridge(ctx, "release_consult", b2, bridgeBody{CallIDs: members(g)})
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotActive || orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		// The agent hung up meanwhile: b2 keeps nobody.
		err = c.updateBridge(ctx, "release_consult", b2, bridgeBody{CallIDs: members()})
		if codeOf(err) == "bridge-invalid-state" {
			err = nil // b2 completed when its last call left: T is out
		}
	case codeOf(err) == "bridge-invalid-state":
		err = nil
	}
	if err != nil {
		// The join was not sent: T leaving b2 alone connects nobody.
		return orchestrator.NotSent(err)
	}
	// 2. A and T together in b1, audio on. The agent's call stays up, alone
	// in b2, until a reading shows the join applied (HangupAgent): the
	// platform answers a bridge update before it acts, and if the join is
	// never applied (the target hangs up first) the recovery gives the
	// caller back to the agent, who must still be there.
	err = c.whileLeaving(ctx, func() error {
		return c.updateBridge(ctx, "join", b1, bridgeBody{CallIDs: members(a, tid), BridgeAudio: audioOn(true)})
	})
	if codeOf(err) == "bridge-invalid-state" {
		// b1 has completed, which a bridge does once no call is left in
		// it: A, the only one since G left, has ended (or left). Said so,
		// the engine reads which party ended, as for a join refused with
		// call-invalid-state; a provider refusal would blame Catapult for
		// a caller who hung up as the complete was sent.
		return orchestrator.E("bandwidth.complete", orchestrator.KindCallNotActive,
			fmt.Errorf("the caller's bridge %s has ended: %w", b1, err))
	}
	return err
}

// consultBridge finds the consult bridge b2 of a transfer that did not
// learn it: the agent's bridge other than b1 (agentBridge), or, when the
// agent's call is in none (it ended), the bridge T is in, if not b1.
// A call read not found there (G, or one in G's bridge) leaves G's bridge
// unknown (agentBridge), but T's is known all the same: T was created
// into b2, and nothing but the join moves it. So such a reading does not
// hold back a join that T's bridge can complete.
func (c *Client) consultBridge(ctx context.Context, t *orchestrator.Transfer) (string, error) {
	b2, err := c.agentBridge(ctx, t)
	if notFound(err) && t.Legs.Consult.CallID != "" {
		b2, err = "", nil
	}
	if err != nil || b2 != "" || t.Legs.Consult.CallID == "" {
		return b2, err
	}
	tc, err := c.getCall(ctx, t.Legs.Consult.CallID)
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		return "", nil // T is gone: the join fails as it would have
	case err != nil:
		return "", err
	}
	if id := tc.bridgeID(); id != t.Legs.Caller.BridgeID && !tc.ended() {
		return id, nil
	}
	return "", nil
}

// patiently calls try until it reports done, pausing between calls with
// a growing back-off, for up to c.leaveWait or until ctx ends; it reports
// whether try was done. The platform answers a bridge update before it
// applies it (notes: actions are applied asynchronously): what depends on
// an update waits for it here, as long as the deployment says the
// platform may take to show one (Config.VisibilityWindow). A fixed 5 s
// gave up on a platform that applies later but within the window (the
// hold taken for unknown and sent again, the split sent again with its
// first attempt still to land), and made a platform that shows its
// updates at once wait 5 s where the window said less.
func (c *Client) patiently(ctx context.Context, try func() bool) bool {
	wait, deadline := c.retryBase, c.now().Add(c.leaveWait)
	for !try() {
		if c.now().Add(wait).After(deadline) || apiclient.Sleep(ctx, wait) != nil {
			return false
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	return true
}

// readKnown reads a call transferd has read before (getKnownCall) again
// while it answers 404, for up to leaveWait: where nothing else would
// read it again, a 404 that persists is then the error, an unknown
// reading, never the call gone.
func (c *Client) readKnown(ctx context.Context, id string) (*apiCall, error) {
	var (
		ac  *apiCall
		err error
	)
	c.patiently(ctx, func() bool {
		ac, err = c.getKnownCall(ctx, id)
		return !notFound(err)
	})
	return ac, err
}

// whileLeaving sends a bridge request again while the platform refuses it
// with bridge-bridged-callId, for up to leaveWait: the call the previous
// update took out of a bridge (the agent out of the caller's bridge, the
// target out of the consult bridge) may still be in it when the next
// request names it. A refused request did nothing, so sending it again is
// safe; a call that stays in the other bridge (someone else's) is refused
// for good after leaveWait.
func (c *Client) whileLeaving(ctx context.Context, send func() error) error {
	var err error
	c.patiently(ctx, func() bool {
		err = send()
		return codeOf(err) != "bridge-bridged-callid"
	})
	return err
}

// HangupAgent implements orchestrator.AgentHanger: once the caller is
// seen with the target, the agent's call, alone in b2, is done. Seen while
// completing, the join has just been applied, and nobody has been told
// the transfer is over. Seen late (by a recovery or a sweep), the client's
// application may have put the agent's call in a conversation of its own
// meanwhile, which is left alone: the call is read first.
//
// G existed before the transfer (Locate read it), and Catapult reads an
// ended call "completed": a 404 for it says nothing (getKnownCall). Taken
// for the call gone, it left the agent alone in b2 on a silent call, for
// good: the engine sends this step once (afterJoin). G is read again for
// a while instead; still not found, the error goes into the outcome.
func (c *Client) HangupAgent(ctx context.Context, t *orchestrator.Transfer) error {
	if t.State == orchestrator.StateCompleting {
		return c.hangup(ctx, "hangup_agent", t.Legs.Agent.CallID)
	}
	g, err := c.readKnown(ctx, t.Legs.Agent.CallID)
	switch {
	case err != nil:
		return err
	case g.ended():
		return nil
	}
	if b := g.bridgeID(); b != "" && b != t.Legs.Consult.BridgeID {
		zerolog.Ctx(ctx).Info().Str("agent_call_id", g.ID).Str("bridge_id", b).
			Msg("the agent's call is in a bridge of another conversation; it is not hung up")
		return nil
	}
	return c.hangup(ctx, "hangup_agent", g.ID)
}

// hangupAttended hangs up T, then empties b2 so that G can rejoin b1.
// An earlier dial whose answers were lost is accounted for: b2 is then
// the agent's other bridge and T the call with our tag.
func (c *Client) hangupAttended(ctx context.Context, t *orchestrator.Transfer) error {
	tid, b2 := t.Legs.Consult.CallID, t.Legs.Consult.BridgeID
	if tid != "" && !t.Sent.Join.IsZero() {
		// After a join was sent T may carry the caller: hanging it up
		// would leave the caller alone. Only b1 says.
		b1, err := c.getBridge(ctx, t.Legs.Caller.BridgeID)
		if err != nil {
			return err
		}
		if b1.has(tid) && b1.has(t.Legs.Caller.CallID) {
			return orchestrator.E("bandwidth.hangup", orchestrator.KindConflict,
				fmt.Errorf("the consult call %s is bridged with the caller", tid))
		}
	}
	if tid == "" && dialled(t) {
		var err error
		if tid, err = c.findConsultCall(ctx, t); err != nil {
			return err
		}
	}
	if tid != "" {
		if err := c.hangup(ctx, "hangup", tid); err != nil {
			return err
		}
	}
	if b2 == "" && dialled(t) {
		// b2 is learnt nowhere else (readings never report it). When it
		// cannot be told the hang-up fails, T down already, and the
		// engine sends it again: reporting it done would leave G in b2,
		// and every unhold refused.
		var err error
		if b2, err = c.agentBridge(ctx, t); err != nil {
			return err
		}
	}
	if b2 != "" {
		err := c.updateBridge(ctx, "empty_bridge", b2, bridgeBody{CallIDs: members()})
		switch {
		case err == nil, codeOf(err) == "bridge-invalid-state", codeOf(err) == "bridge-not-found":
			// Emptied, or completed already when its last call left.
		default:
			return err
		}
	}
	return nil
}

// unholdAttended puts A and G back together in b1 with audio on. When it
// cannot, it says why: the caller's call gone is KindCallNotFound, so the
// outcome reads caller_restored false.
func (c *Client) unholdAttended(ctx context.Context, t *orchestrator.Transfer) error {
	const op = "bandwidth.unhold"
	a, g, b1 := t.Legs.Caller.CallID, t.Legs.Agent.CallID, t.Legs.Caller.BridgeID
	body := bridgeBody{CallIDs: members(a, g), BridgeAudio: audioOn(true)}
	err := c.updateBridge(ctx, "unhold", b1, body)
	if err == nil {
		return nil
	}
	if codeOf(err) == "bridge-bridged-callid" { // bridge-bridged-callId: codeOf is lower case
		// G is still in b2 (its emptying failed, never ran, or was never
		// sent because b2's id was not known): empty it, it is ours, and
		// try once more. An unsaved b2 is G's other bridge, when the
		// transfer dialled and the bridge holds nothing but G and our
		// consult (agentBridge); a bridge of someone else's is left alone
		// and the refusal stands. When that cannot be read, the refusal
		// stands too: the engine tries the unhold again.
		b2 := t.Legs.Consult.BridgeID
		if b2 == "" && dialled(t) {
			b2, _ = c.agentBridge(ctx, t)
		}
		if b2 != "" {
			e := c.updateBridge(ctx, "empty_bridge", b2, bridgeBody{CallIDs: members()})
			switch {
			case e == nil, codeOf(e) == "bridge-invalid-state", codeOf(e) == "bridge-not-found":
				// Emptied, or completed already when its last call left.
				if err = c.updateBridge(ctx, "unhold", b1, body); err == nil {
					return nil
				}
			}
		}
	}
	if k := orchestrator.KindOf(err); k == orchestrator.KindProviderUnavailable || k == orchestrator.KindProviderAuth {
		return err // the engine retries, or the cause is ours
	}
	// A and G were read before (Locate), so a 404 for either says nothing
	// (getKnownCall). Taken for the agent gone, it had the engine give up
	// the unhold for good and leave the caller held alone in b1. Taken for
	// the caller gone, it answered the unhold "not found": the engine
	// takes one such answer back when a reading shows the caller held,
	// but a second one, the caller still held, is its sign that the
	// unhold addresses a leg that has ended, and it gave the unhold up
	// for good all the same. Unknown, the refusal stands and the engine
	// sends the unhold again.
	if ac, aerr := c.getKnownCall(ctx, a); aerr == nil && ac.ended() {
		return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("the caller's call %s ended: %w", a, err))
	}
	if gc, gerr := c.getKnownCall(ctx, g); gerr == nil && gc.ended() {
		return orchestrator.E(op, orchestrator.KindCallNotActive,
			fmt.Errorf("the agent's call %s ended, so the caller cannot be given back to the agent: %w", g, err))
	}
	return err
}
