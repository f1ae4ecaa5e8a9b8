package netsapiens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A listing answered 200 with no array at all, an empty body or null (a
// proxy's or a PHP controller's answer to a failure it did not report, a
// response cut to nothing), was read as a domain without calls. Readings
// mostly recovered (a caller or consult seen before and not listed is
// read by its id), but the join's lookup of the consult's session, past
// the visibility window of the dial, took the consult not listed for a
// refusal: the transfer failed provider_rejected, and the recovery hung up
// the consult the agent and target were talking on. (A domain with no
// calls answers [] [inferred].) Such a listing is now checked against the
// domain's count: a count of none says the domain has no calls (the
// other side of the guess: a PBX that answers so when idle), and the
// lookup is refused as before; anything else is an unknown reading, and
// the join is tried again.
func TestAListingAnsweredWithoutAnArrayIsCheckedAgainstTheCount(t *testing.T) {
	for body, idle := range map[string]string{"": nssim.EmptyListingNone, "null": nssim.EmptyListingNull} {
		t.Run("body "+body, func(t *testing.T) {
			const trID = "tr_01JEMPTYLISTINGXXXXXXXXXX0"
			const window = 5 * time.Second
			clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
			tr.Seen.Consult, tr.Answered = true, true
			clock.advance(2 * window) // past every window
			observe := observer(t, c, tr)
			sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: 200, Body: &body, Count: 1})
			if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable && (err != nil || obs.Consult == orchestrator.ConsultAbsent) {
				t.Fatalf("a listing answered %q while calls are up: observation %+v, %v; want the consult shown, or an unknown reading", body, obs, err)
			}

			sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: 200, Body: &body, Count: 1})
			err := c.Complete(context.Background(), tr)
			if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !errors.Is(err, orchestrator.ErrNotSent) {
				t.Fatalf("the join's lookup on a listing answered %q: %v (kind %v), want unknown and not sent", body, err, orchestrator.KindOf(err))
			}
			if err := c.Complete(context.Background(), tr); err != nil {
				t.Fatalf("the join on the next listing: %v", err)
			}

			// The other side of the guess: the domain has no calls left,
			// and the PBX answers a listing without rows so
			// (nssim.Config.EmptyListing): not listed, as a [] says.
			if err := sim.SetGuesses(nssim.Guesses{EmptyListing: idle}); err != nil {
				t.Fatal(err)
			}
			for _, s := range sim.Sessions(domain) {
				if err := sim.Hangup(s.SessionID, "term"); err != nil {
					t.Fatal(err)
				}
			}
			tr.Legs.Consult.SessionID = ""
			err = c.Complete(context.Background(), tr)
			if orchestrator.KindOf(err) != orchestrator.KindProviderRejected || !errors.Is(err, orchestrator.ErrNotSent) {
				t.Fatalf("the join's lookup where the domain counts no calls: %v (kind %v), want refused and not sent", err, orchestrator.KindOf(err))
			}
			if obs, err := observe(); err != nil || obs.Consult != orchestrator.ConsultAbsent {
				t.Fatalf("observation %+v, %v: want the consult ended where the domain counts no calls", obs, err)
			}
		})
	}
}
