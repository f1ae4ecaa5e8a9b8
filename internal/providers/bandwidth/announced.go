package bandwidth

import (
	"context"
	"fmt"
	"net/http"
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
	return orchestrator.Legs{Caller: orchestrator.LegRef{CallID: id}}, nil
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
	const op = "bandwidth.transfer"
	// The engine sends it once; a lost answer is found again by reading
	// A's transfer (findTransferLeg), here or when watching.
	var cr created
	err := c.do(ctx, request{op: "transfer", method: http.MethodPost, path: "/calls/" + seg(t.Legs.Caller.CallID),
		body: c.transferBody(t)}, &cr)
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

// findTransferLeg returns the B-leg of A's transfer to the target, "" when
// A shows no such transfer, and A as read. Catapult's call object names
// no B-leg, so B is the newest outbound call to the target started since
// the transfer was created (startTime has whole seconds), and, when
// transferd set one, with our callbackUrl.
func (c *Client) findTransferLeg(ctx context.Context, t *orchestrator.Transfer) (string, *apiCall, error) {
	a, err := c.getCall(ctx, t.Legs.Caller.CallID)
	if err != nil {
		return "", nil, err
	}
	// A reads "transferring" while it is transferred; depending on the
	// platform it may read "active" again once B answered, but its
	// transferTo still names the target (2016 call properties).
	if a.state() != stateTransferring && a.TransferTo != t.Request.Target {
		return "", a, nil
	}
	calls, err := c.callsTo(ctx, t.Request.Target)
	if err != nil {
		return "", a, err
	}
	since := t.CreatedAt.Truncate(time.Second)
	cb := c.callbackURL(t.ID)
	for i := range calls {
		b := &calls[i]
		if b.ID == a.ID || b.Direction != "out" || b.To != t.Request.Target {
			continue
		}
		if st, ok := b.started(); !ok || st.Before(since) {
			continue
		}
		if cb != "" && b.CallbackURL != cb {
			continue
		}
		return b.ID, a, nil
	}
	return "", a, nil
}

// observeAnnounced reads A, then B. The order matters: when B fails, the
// platform may end A at the same moment; reading A first means that an
// ended A next to a still ringing B was the caller hanging up.
func (c *Client) observeAnnounced(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Observation, error) {
	var obs orchestrator.Observation
	a, err := c.getCall(ctx, t.Legs.Caller.CallID)
	aGone := false
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
		aGone = true
	case err != nil:
		return obs, err
	default:
		aGone = a.ended()
	}

	var b *apiCall
	cause := ""
	id := t.Legs.Consult.CallID
	if id == "" && dialled(t) && !aGone {
		// The transfer's answer was lost: A's transfer names B.
		if id, _, err = c.findTransferLeg(ctx, t); err != nil {
			return obs, err
		}
		obs.ConsultLeg.CallID = id
	}
	if id != "" {
		b, err = c.getCall(ctx, id)
		if err != nil && orchestrator.KindOf(err) != orchestrator.KindCallNotFound {
			return obs, err
		}
		switch {
		case b == nil:
			// Not readable (yet, or any more): the engine decides.
		case b.state() == stateStarted:
			obs.Consult = orchestrator.ConsultRinging
		case b.live():
			obs.Consult = orchestrator.ConsultAnswered
		default:
			cause = c.endCause(ctx, t, id)
			consultEnded(&obs, b, cause)
		}
		if b != nil && b.live() {
			obs.ConsultLegs = 1
		}
	}

	switch {
	case aGone && targetFailed(cause):
		// B failed and the platform ended the caller's call with it (what
		// Catapult does to a failed BXML transfer). Not a hang-up by the
		// caller: the engine reports the consult's end reason.
		obs.Caller = orchestrator.CallerGone
		obs.Detail += "; Bandwidth ended the caller's call when the transfer failed"
	case aGone:
		obs.Caller = orchestrator.CallerGone
	case b != nil && b.live():
		// B answered: the platform connected A and B.
		obs.Caller = orchestrator.CallerTransferred
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

// hangupAnnounced cancels a B-leg that still rings. An ended B is success.
// An answered B is left alone: it carries the caller, and the platform
// ends a transfer as a whole, so hanging it up would hang up the caller.
func (c *Client) hangupAnnounced(ctx context.Context, t *orchestrator.Transfer) error {
	id := t.Legs.Consult.CallID
	if id == "" {
		if !dialled(t) {
			return nil
		}
		// The transfer's answer was lost: it may have created a B-leg.
		var err error
		if id, _, err = c.findTransferLeg(ctx, t); err != nil {
			if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
				return nil // A is gone, and B with it
			}
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
