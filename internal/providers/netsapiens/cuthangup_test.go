package netsapiens_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The hang-up of a consult after a join, on a PBX that ignores start in a
// domain busier than a page (every listing of the domain cut short). The
// engine sends it only once a reading shows the join did not take; it
// stayed unknown at every try (a session with our call-id carrying the
// caller could be on a page not read), so the consult, the agent talking
// to the target, was never hung up. The caller's own call, read by its
// id (or, where the PBX reads only a user's own legs, the agent's leg
// that carries it), shows which session the caller is in: one with our
// call-id is the caller's call now, and nothing is sent; one without it
// rules out any session with our call-id carrying the caller, and the
// consult is read and disconnected as on a listing read whole. Where no
// read shows the caller, the consult read by our call-id tells (see
// TestTheHangupAfterAFailedJoinOnACutListingOnceTheCallerHungUp); the
// hang-up within the visibility window of the join stays unknown, nothing
// sent (an API node lagging behind may show the caller's call, or the
// consult's, as it was before it).
func TestTheHangupAfterAJoinOnACutListingReadsTheCallersCall(t *testing.T) {
	type want int
	const (
		ended   want = iota // the consult disconnected
		kept                // nothing sent, the caller with the target
		unknown             // nothing sent, the hang-up unknown
	)
	for _, tc := range []struct {
		name     string
		keeps    string
		otherLeg string
		joined   bool
		young    bool // the join sent a moment ago
		want     want
	}{
		{"not joined: the consult is disconnected", nssim.JoinKeepsConsult, nssim.OtherLegFound, false, false, ended},
		{"not joined, the join a moment ago: unknown", nssim.JoinKeepsConsult, nssim.OtherLegFound, false, true, unknown},
		{"not joined, only the user's own legs read", nssim.JoinKeepsConsult, nssim.OtherLegNotFound, false, false, ended},
		{"joined, the consult's session kept", nssim.JoinKeepsConsult, nssim.OtherLegFound, true, false, kept},
		{"joined, the caller's session kept", nssim.JoinKeepsCaller, nssim.OtherLegFound, true, false, kept},
		// No read shows the caller's call; the consult read by our
		// call-id under the agent, who left it, answers 404: nothing of
		// the agent's is left to end (unknown before the sixty-sixth
		// pass).
		{"joined, the consult's session kept, only the user's own legs read", nssim.JoinKeepsConsult, nssim.OtherLegNotFound, true, false, kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JCUTHANGUPXXXXXXXXXXXXXX0"
			const window = 5 * time.Second
			simCfg := stuckPBX
			simCfg.JoinKeeps, simCfg.ReadOtherLeg = tc.keeps, tc.otherLeg
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			clock, sim, c, tr, orig := locatedOnACutListing(t, ctx, trID, simCfg, window)
			tr.Answered = true
			if tc.joined {
				joinedOn(t, ctx, sim, c, tr)
			}
			tr.Sent.Join = clock.Now()
			clock.advance(2 * window)
			if tc.young {
				// An API node lagging behind may show the caller's call as
				// it was before the join.
				tr.Sent.Join = clock.Now().Add(-window / 2)
			}

			err := c.HangupConsult(ctx, tr)
			disconnects, consultUp, callerWithTarget := afterTheHangup(t, ctx, sim, trID, orig)
			switch tc.want {
			case ended:
				if err != nil || consultUp || disconnects == 0 {
					t.Errorf("hang-up %v; the consult up %v after %d disconnects: want it disconnected", err, consultUp, disconnects)
				}
			case kept:
				if err != nil || disconnects != 0 || !callerWithTarget {
					t.Errorf("hang-up %v; %d disconnects sent, the caller with the target %v: want none sent, the join kept", err, disconnects, callerWithTarget)
				}
			case unknown:
				if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || disconnects != 0 || callerWithTarget != tc.joined {
					t.Errorf("hang-up %v; %d disconnects sent, the caller with the target %v: want unknown, none sent", err, disconnects, callerWithTarget)
				}
			}
		})
	}
}

// locatedOnACutListing starts a young consult of trID on simCfg (a PBX
// that cuts its listings) behind four calls of other users, so that the
// caller's call and the consult are past the first page, and locates the
// caller's call through c: the set-up of the hang-up tests on a cut
// listing, which set the consult's leg (consultLegOf) once they have it.
func locatedOnACutListing(t *testing.T, ctx context.Context, trID string, simCfg nssim.Config, window time.Duration) (*fakeClock, *nssim.Sim, *netsapiens.Client, *orchestrator.Transfer, nssim.ActiveCall) {
	t.Helper()
	clock, sim, c, tr, orig := youngConsultAfter(t, trID, simCfg, window, func(sim *nssim.Sim) {
		placeOthers(t, sim, 4) // the caller's call and the consult past the first page
	})
	// The locate finds the PBX out (it ignores start, pages by 3).
	tr.Request.Call.CallID = orig.OrigCallID
	if _, err := c.Locate(ctx, tr); err != nil {
		t.Fatalf("locate: %v", err)
	}
	consultLegOf(sim, tr, trID)
	return clock, sim, c, tr, orig
}

// consultLegOf sets tr's consult leg to the session sim holds with our
// call-id of trID, if any.
func consultLegOf(sim *nssim.Sim, tr *orchestrator.Transfer, trID string) {
	for _, ss := range sim.Truth().Sessions {
		if ss.ByCallID == netsapiens.ConsultCallID(trID) {
			tr.Legs.Consult = orchestrator.LegRef{CallID: netsapiens.ConsultCallID(trID), SessionID: ss.SessionID, Server: ss.CoreServer}
		}
	}
}

// joinedOn sends tr's join through c and waits for sim to apply it.
func joinedOn(t *testing.T, ctx context.Context, sim *nssim.Sim, c *netsapiens.Client, tr *orchestrator.Transfer) {
	t.Helper()
	if err := c.Complete(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
}

// afterTheHangup waits for sim to apply what a hang-up of trID's consult
// sent, and says how many disconnects (or rejects) it was sent, whether
// the consult still carries the agent (1000), and whether the caller's
// call orig is with the target (1010).
func afterTheHangup(t *testing.T, ctx context.Context, sim *nssim.Sim, trID string, orig nssim.ActiveCall) (disconnects int, consultUp, callerWithTarget bool) {
	t.Helper()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpDisconnect || r.Operation == nssim.OpReject {
			disconnects++
		}
	}
	for _, ss := range sim.Truth().Sessions {
		if ss.ByCallID == netsapiens.ConsultCallID(trID) && (ss.Orig.User == "1000" || ss.Term.User == "1000") {
			consultUp = true
		}
		if (ss.Orig.CallID == orig.OrigCallID || ss.Term.CallID == orig.OrigCallID) && (ss.Orig.User == "1010" || ss.Term.User == "1010") {
			callerWithTarget = true
		}
	}
	return disconnects, consultUp, callerWithTarget
}
