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

// A consult the transfer gives up on while it rings is rejected (DELETE
// …/reject), and the target answers as the reject reaches the switch.
// What a reject does to a call answered meanwhile is undocumented: every
// call action is accepted (202) and applied later [doc], so a PBX may
// accept it and find, as it applies it, a call that no longer rings
// (nssim answers such a reject with NotRingingStatus; this PBX accepts
// it, 202, and does nothing). The consult, the agent and the target
// talking, must still be hung up. Before, every hang-up the engine sent
// again on seeing the consult up was one more reject, since the transfer
// never saw the target answer: the consult stayed up for good, the
// sweeper sending rejects.
func TestAConsultAnsweredAsItIsRejectedIsHungUp(t *testing.T) {
	var rejects atomic.Int32
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodDelete || !strings.HasSuffix(r.URL.Path, "/reject") {
				api.ServeHTTP(w, r)
				return
			}
			if rejects.Add(1) == 1 {
				// The target answers just before the first reject lands.
				if err := sim.Answer(domain, "1010"); err != nil {
					t.Error(err)
				}
			}
			rec := record(api, r)
			if rec.Code == http.StatusConflict {
				// Accepted, and found not ringing when applied: nothing done.
				w.WriteHeader(http.StatusAccepted)
				return
			}
			replay(w, rec, rec.Body.Bytes())
		})
	}
	h := setupWrapped(t, nssim.Config{}, wrap, func(c *orchestrator.Config) {
		c.VerifyTimeout, c.TombstoneTTL = 300*time.Millisecond, time.Second
	})
	h.placeCall(t)
	h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: "never"})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, time.Second).ID)
	if rejects.Load() == 0 {
		t.Fatalf("no reject was sent; requests %q", commands(h.sim.Requests()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.Wait(ctx, func() bool { return consultSession(h.sim, tr.ID) == nil }); err != nil {
		x, _ := h.eng.Get(context.Background(), tr.ID)
		t.Fatalf("the consult %s is still up (%d rejects sent); transfer %s outcome %+v; sessions %+v",
			netsapiens.ConsultCallID(tr.ID), rejects.Load(), x.State, x.Outcome, h.sim.Sessions(domain))
	}
	// The obligation the unverified outcome left is discharged.
	got := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	if !got.Outcome.Verified || !got.Outcome.CallerRestored {
		t.Errorf("outcome %+v once the consult is hung up: want verified, caller restored", got.Outcome)
	}
}
