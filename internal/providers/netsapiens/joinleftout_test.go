package netsapiens_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A join the PBX accepted and did not apply (the caller's and the
// consult's sessions on different cores, the join naming the caller's
// core, which this PBX ignores: HostnameMatch destination, WrongHostname
// ignore), while its listings leave the consult's row out from the join
// on (a PBX that takes the consult's row out of its listing as it begins
// applying a join, which the engine already waits out until the join
// could have applied: the premise of TestConsultMissingFromOneListingIsReadByItsID,
// after a join). The consult is up, the agent and the target talking, and
// the caller is shown held with the agent: the join did not take, and its
// second form, naming the consult's core, would.
//
// Before, a consult seen and not listed was read by its call-id only while
// no join was sent: the first reading a visibility window after the join
// took the consult for gone, the transfer failed target_hung_up, the
// second form was never sent, and the recovery hung up the consult the
// agent and the target were talking on. Once a reading shows the join did
// not take (the caller's row still carries the agent), a consult seen and
// not listed is read by its call-id too; shown up, the second form goes
// out and the transfer completes.
func TestAConsultLeftOutAfterAJoinThatDidNotTakeIsReadByItsID(t *testing.T) {
	var joins atomic.Int32
	var reads atomic.Int32
	wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/transfer"):
				joins.Add(1)
			case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/calls/transferd-"):
				reads.Add(1)
			case r.Method == http.MethodGet && r.URL.Path == "/domains/"+domain+"/calls" && joins.Load() == 1:
				filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
					kept := rows[:0]
					for _, row := range rows {
						if by, _ := row["call-by-call-id"].(string); !strings.HasPrefix(by, "transferd-") {
							kept = append(kept, row)
						}
					}
					return kept
				})
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setupWrapped(t, nssim.Config{HostnameMatch: nssim.HostnameOfDestination, WrongHostname: nssim.HostnameIgnore}, wrap)
	orig := h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, time.Minute).ID)
	if joins.Load() == 0 {
		t.Fatalf("no join was sent: the test did not reach its case; outcome %s %+v", tr.State, tr.Outcome)
	}
	if tr.State != orchestrator.StateCompleted {
		consultUp := false
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.sim.WaitApplied(ctx); err != nil {
			t.Fatal(err)
		}
		consultUp = consultSession(h.sim, tr.ID) != nil
		ended := ""
		for _, e := range h.sim.Truth().Ended {
			if e.Call.ByCallID == netsapiens.ConsultCallID(tr.ID) {
				ended = string(e.Reason) + ": " + e.Detail
			}
		}
		t.Fatalf("transfer %s %+v after %d joins (%d reads of the consult by its call-id); the consult up %v, ended %q: "+
			"want the join's second form sent and the transfer completed (the consult was up all along, the target never hung up)",
			tr.State, tr.Outcome, joins.Load(), reads.Load(), consultUp, ended)
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}

// A join that took, after which a listing leaves the caller's row out
// once: the row being rewritten by the join itself (the agent's leg
// replaced by the target's, or the caller's leg moved into the consult's
// session), as TestCallerRowMissingFromOneListingStillGetsTheCallerBack
// plays before the join. Before the join, such a caller is read by its
// call-id; after it, it was not: past the visibility window of the dial
// the reading showed the caller gone, and the engine ends the transfer
// failed, caller_hung_up, not restored ("the caller's call ended before a
// reading showed the transfer connect it to the target"), while the
// caller talks to the target. Read by its call-id under the agent's user
// (found on this side of nssim.Config.ReadOtherLeg), the caller is shown
// with the target. On the other side (a 404: the caller's leg is not the
// agent's), the read tells nothing and the listing stands, as before.
func TestACallerLeftOutOfOneListingAfterTheJoinIsReadByItsID(t *testing.T) {
	const trID = "tr_01JCALLERLEFTOUTAFTERJOIN0"
	for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
		t.Run(keeps, func(t *testing.T) {
			var hidden hiddenIDs
			sim, srv := newSimServer(t, nssim.Config{JoinKeeps: keeps}, hidingRows(&hidden))
			orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey,
				Attempts: 1, RetryBase: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			tr := transferOf(trID, orig)
			dialConsult(t, sim, c, tr)
			s := consultSession(sim, trID)
			if s == nil {
				t.Fatal("the consult is not up")
			}
			tr.Legs.Consult = orchestrator.LegRef{CallID: netsapiens.ConsultCallID(trID), SessionID: s.SessionID, Server: s.CoreServer}
			tr.Seen.Consult, tr.Answered = true, true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Complete(ctx, tr); err != nil {
				t.Fatal(err)
			}
			if err := sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
			// Dialled and joined long ago: past the visibility window.
			tr.Sent.Dial = time.Unix(1_700_000_000, 0)
			tr.Sent.Join = tr.Sent.Dial.Add(time.Minute)
			observe := observer(t, c, tr)
			if obs, err := observe(); err != nil || obs.Caller != orchestrator.CallerTransferred {
				t.Fatalf("setup: observation %+v, %v; want the caller with the target", obs, err)
			}

			hidden.set(orig.OrigCallID)
			obs, err := observe()
			if err == nil && obs.Caller != orchestrator.CallerTransferred {
				t.Fatalf("one listing leaves out the caller's call, with the target since the join: observation %+v; "+
					"want the caller with the target (read by its id), or an unknown reading, not %s", obs, obs.Caller)
			}
		})
	}
}

// TestACallerJoinedIntoAYoungSessionLeftOutByALaggingNodeIsUnknown, with
// the reading made, as a watcher makes it, for the record as last saved:
// before the join's save. A PBX that keeps the consult's session
// (JoinKeepsConsult) lists the caller, after the join, in the session the
// dial made a moment ago, which a lagging node leaves out; the reading,
// made for a record that had sent no join, read the caller's call by its
// id, and the lagging node answered 404 (the caller's leg is in a session
// it does not know yet), as it did for the agent's leg (whose session the
// join ended). The transfer being older than the visibility window, the
// 404 was remembered as the caller gone, and the observation judged for
// the record with the join showed the caller gone: the engine ends the
// transfer caller_hung_up while the caller talks to the target. Within
// the window of the dial the caller's call may be in that young session:
// the 404 is unknown, and not remembered.
func TestACallerReadAsGoneByALaggingNodeRightAfterAJoinIsUnknown(t *testing.T) {
	const trID = "tr_01JLAGGINGSTALERECORDXXXX0"
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult}, 5*time.Second)
	tr.Seen.Consult, tr.Answered = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	saved := tr.Clone() // as last saved: no join yet
	if err := c.Complete(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Sent.Join = clock.Now()
	clock.advance(time.Second) // within the window of the dial

	lagging(t, sim, true)
	v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{saved})
	if err != nil {
		t.Fatal(err)
	}
	if obs, err := v.Observe(tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("observation %+v, %v: want an unknown reading, not the caller gone", obs, err)
	}
	lagging(t, sim, false)
	if obs, err := observer(t, c, tr)(); err != nil || obs.Caller != orchestrator.CallerTransferred {
		t.Fatalf("observation %+v, %v: want the caller with the target once the node has caught up", obs, err)
	}
}
