package netsapiens_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The consult read by our call-id after a join on a cut listing, where
// no read shows the caller's call (TestTheHangupAfterAFailedJoinOnACutListingOnceTheCallerHungUp),
// in the forms of a row a PBX may answer: which fields a PBX fills after
// a join, and from which side it renders a session, is undocumented
// [guess]. Only a row of the consult's session that carries the agent (on
// either side) is the consult the join left, disconnected; one carrying
// neither the agent nor the caller, or our call-id in a session other
// than the consult's, does not say which call our call-id addresses
// (disconnected, it may be the caller's call with the target): unknown,
// nothing sent. A row of the caller's session that shows our call-id only
// as call-by-call-id is the caller's call: nothing to end. Every read
// answers the row (a fault), so that the caller's call-id is read as not
// shown by it, as after the caller hung up.
func TestTheConsultReadAfterACutHangupIsEndedOnlyWhereItCarriesTheAgent(t *testing.T) {
	type want int
	const (
		ended   want = iota // disconnected
		kept                // nothing sent, done
		unknown             // nothing sent, an error
	)
	for _, tc := range []struct {
		name string
		// row builds the read's row from our call-id, the consult's
		// session and the caller's.
		row  func(id, consult, caller string) map[string]string
		want want
	}{
		{"the consult's session, the agent on the term side", func(id, consult, _ string) map[string]string {
			return map[string]string{"call-session-id": consult, "call-orig-call-id": id, "call-by-call-id": id,
				"call-orig-user": "1010", "call-term-user": "1000"}
		}, ended},
		{"the consult's session, neither the agent nor the caller on it", func(id, consult, _ string) map[string]string {
			return map[string]string{"call-session-id": consult, "call-orig-call-id": id, "call-by-call-id": id,
				"call-orig-user": "15550009999", "call-term-user": "1010"}
		}, unknown},
		{"our call-id in a session other than the consult's, the agent on it", func(id, _, _ string) map[string]string {
			return map[string]string{"call-session-id": "20990101000000000001", "call-orig-call-id": id, "call-by-call-id": id,
				"call-orig-user": "1000", "call-term-user": "1010"}
		}, unknown},
		{"the caller's session, our call-id only as call-by", func(id, _, caller string) map[string]string {
			return map[string]string{"call-session-id": caller, "call-orig-call-id": "20990101000000000002-00", "call-by-call-id": id,
				"call-orig-user": "1010", "call-term-user": "15550009999"}
		}, kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JCUTCONSULTROWSXXXXXXXX0"
			const window = 5 * time.Second
			simCfg := stuckPBX
			simCfg.ReadOtherLeg = nssim.OtherLegFound
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			clock, sim, c, tr, orig := locatedOnACutListing(t, ctx, trID, simCfg, window)
			if tr.Legs.Consult.SessionID == "" || tr.Legs.Caller.SessionID == "" {
				t.Fatalf("legs %+v: want both sessions known", tr.Legs)
			}
			tr.Answered = true
			tr.Sent.Join = clock.Now() // sent, and a reading showed it did not take
			clock.advance(2 * window)
			id := netsapiens.ConsultCallID(trID)
			body, err := json.Marshal(tc.row(id, tr.Legs.Consult.SessionID, tr.Legs.Caller.SessionID))
			if err != nil {
				t.Fatal(err)
			}
			row := string(body)
			sim.InjectFault(nssim.Fault{Operation: nssim.OpRead, Status: 200, Body: &row})
			sim.ResetRequests()

			err = c.HangupConsult(ctx, tr)
			sim.ClearFaults()
			disconnects, _, _ := afterTheHangup(t, ctx, sim, trID, orig)
			reads := 0
			for _, r := range sim.Requests() {
				if r.Operation == nssim.OpRead && strings.HasSuffix(r.Path, "/"+id) {
					reads++
				}
			}
			switch tc.want {
			case ended:
				if err != nil || disconnects == 0 || reads != 1 {
					t.Errorf("hang-up %v after %d disconnects, the consult read %d times: want it disconnected, read once", err, disconnects, reads)
				}
			case kept:
				if err != nil || disconnects != 0 {
					t.Errorf("hang-up %v after %d disconnects: want done, none sent", err, disconnects)
				}
			case unknown:
				if err == nil || disconnects != 0 {
					t.Errorf("hang-up %v after %d disconnects: want unknown, none sent", err, disconnects)
				}
			}
		})
	}
}
