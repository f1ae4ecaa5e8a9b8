package netsapiens_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// After a join that kept the consult's session (JoinKeeps consult), that
// session, our call-id, is the caller's call with the target. The hang-up
// of the consult after a join looks for it in a listing and, past the
// visibility window, took a listing that did not show it for the call
// gone and disconnected by our call-id. A listing that looks whole may
// leave the row out: here a PBX pages by 2 rows of its own, below the 100
// transferd asks for, and other users' calls fill the first page. The
// caller's call with the target was disconnected, the completed join
// undone. The call is now read by its id first: carrying the caller, or
// answered 404 (a PBX that reads only the agent's own legs), nothing is
// sent. The other side: a consult that still carries the agent and the
// target (the join did not take) is read as such and disconnected.
func TestTheHangupAfterAJoinReadsACallTheListingLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		otherLeg  string
		joined    bool
		wantEnded bool
	}{
		{"joined, other legs read", nssim.OtherLegFound, true, false},
		{"joined, only the user's own legs read", nssim.OtherLegNotFound, true, false},
		{"not joined: the consult is disconnected", nssim.OtherLegFound, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JJOINEDREADXXXXXXXXXXXXX0"
			const window = 5 * time.Second
			simCfg := nssim.Config{JoinKeeps: nssim.JoinKeepsConsult, ReadOtherLeg: tc.otherLeg,
				ListPageSize: 2, ListParams: nssim.ListParamsStartOnly}
			clock, sim, c, tr, orig := youngConsultAfter(t, trID, simCfg, window, func(sim *nssim.Sim) {
				for i := 0; i < 2; i++ {
					if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: fmt.Sprintf("200%d", i),
						From: fmt.Sprintf("1555555000%d", i), To: "11111111111"}); err != nil {
						t.Fatal(err)
					}
				}
			})
			consultLegOf(sim, tr, trID)
			tr.Answered = true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.joined {
				joinedOn(t, ctx, sim, c, tr)
			}
			tr.Sent.Join = clock.Now()
			clock.advance(2 * window) // past the window: not listed was gone

			if err := c.HangupConsult(ctx, tr); err != nil {
				t.Fatalf("hang-up after the join: %v", err)
			}
			disconnects, consultUp, callerWithTarget := afterTheHangup(t, ctx, sim, trID, orig)
			if tc.wantEnded {
				if consultUp || disconnects == 0 {
					t.Errorf("the consult, not joined, is up %v after %d disconnects: want it disconnected", consultUp, disconnects)
				}
				return
			}
			if disconnects != 0 || !callerWithTarget {
				t.Errorf("%d disconnects sent, the caller with the target %v: want none sent, and the join kept; ended %+v",
					disconnects, callerWithTarget, sim.Truth().Ended)
			}
		})
	}
}
