package netsapiens_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The hang-up of a consult after a join that did not take, on a PBX that
// ignores start in a domain busier than a page (every listing of the
// domain cut short), once the caller has hung up. No read shows the
// caller's call any more (each answers 404), and the hang-up was unknown
// at every try: the consult, the agent talking to the target, rang or
// talked on, orphaned. Read by our call-id under the agent's user, the
// consult's own session, still carrying the agent and not the caller, is
// the consult the join left: disconnected. A consult read 404 past the
// window of the dial is gone: nothing is sent, and the hang-up is done.
func TestTheHangupAfterAFailedJoinOnACutListingOnceTheCallerHungUp(t *testing.T) {
	for _, tc := range []struct {
		name        string
		otherLeg    string
		consultGone bool
	}{
		{"every leg read", nssim.OtherLegFound, false},
		{"only the user's own legs read", nssim.OtherLegNotFound, false},
		{"the consult ended too", nssim.OtherLegFound, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JCUTHANGUPGONEXXXXXXXXXX0"
			const window = 5 * time.Second
			simCfg := stuckPBX
			simCfg.ReadOtherLeg = tc.otherLeg
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			clock, sim, c, tr, orig := locatedOnACutListing(t, ctx, trID, simCfg, window)
			tr.Answered = true
			tr.Sent.Join = clock.Now() // sent, and a reading showed it did not take
			clock.advance(2 * window)
			if err := sim.Hangup(orig.SessionID, "orig"); err != nil {
				t.Fatal(err)
			}
			if tc.consultGone {
				if err := sim.Hangup(tr.Legs.Consult.SessionID, "term"); err != nil {
					t.Fatal(err)
				}
			}
			sim.ResetRequests()

			err := c.HangupConsult(ctx, tr)
			disconnects, consultUp, _ := afterTheHangup(t, ctx, sim, trID, orig)
			switch {
			case tc.consultGone && (err != nil || disconnects != 0):
				t.Errorf("hang-up %v after %d disconnects: want done, none sent (the consult gone)", err, disconnects)
			case !tc.consultGone && (err != nil || consultUp || disconnects == 0):
				t.Errorf("hang-up %v; the consult up %v after %d disconnects: want it disconnected", err, consultUp, disconnects)
			}
		})
	}
}
