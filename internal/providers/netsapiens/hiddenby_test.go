package netsapiens_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The hang-up of a consult after a join that took, on a PBX that keeps
// the consult's session (the caller's leg moved into it) and shows no
// call-by-* fields on it from then on, while our call-id still addresses
// it (nssim's JoinHidesCallBy; whether those fields survive is a guess).
// No row then carries our call-id beside the caller: the listing showed
// none, the caller's own call read by its id showed it without our
// call-id (on a listing cut short), and the read of our call-id answered
// the caller's call, which was taken for "tells nothing": the disconnect
// by our call-id ended the caller's call with the target. A row that
// carries the caller in the consult's session (its call-session-id) is
// the caller's call now, whichever ids it shows: nothing is sent. The
// other side of the guess (the fields kept) is
// TestTheHangupAfterAJoinOnACutListingReadsTheCallersCall's.
func TestTheHangupAfterAJoinKeepingTheConsultsSessionWithoutItsCallByLeavesTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  nssim.Config
		cut  bool
	}{
		{"a listing read whole", nssim.Config{}, false},
		{"a listing cut short", stuckPBX, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JHIDDENBYXXXXXXXXXXXXXXX0"
			const window = 5 * time.Second
			simCfg := tc.cfg
			simCfg.JoinKeeps, simCfg.JoinHidesCallBy = nssim.JoinKeepsConsult, true
			clock, sim, c, tr, orig := youngConsultAfter(t, trID, simCfg, window, func(sim *nssim.Sim) {
				if tc.cut {
					placeOthers(t, sim, 4) // the caller's call and the consult past the first page
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tr.Request.Call.CallID = orig.OrigCallID
			if _, err := c.Locate(ctx, tr); err != nil {
				t.Fatalf("locate: %v", err)
			}
			consultLegOf(sim, tr, trID)
			if tr.Legs.Consult.SessionID == "" {
				t.Fatal("no consult")
			}
			tr.Answered = true
			joinedOn(t, ctx, sim, c, tr)
			tr.Sent.Join = clock.Now()
			clock.advance(2 * window)

			err := c.HangupConsult(ctx, tr)
			disconnects, _, callerWithTarget := afterTheHangup(t, ctx, sim, trID, orig)
			if err != nil || disconnects != 0 || !callerWithTarget {
				t.Errorf("hang-up %v; %d disconnects sent, the caller with the target %v: want none sent, the join kept", err, disconnects, callerWithTarget)
			}
		})
	}
}
