package bandwidth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A callback that names the ringing consult leg (an event of the call
// that changes nothing a reading shows) wakes a reconcile whose reading
// teaches nothing and that has nothing else to save. The note it took is
// saved by that reconcile's end all the same: kept in this process's
// memory until some later save, it would go with the process if that
// stopped first, and the process resuming the transfer, which knows the
// notes only from the record (recall), would never learn them.
func TestACallbackNoteIsSavedByTheReconcileItWakesAlone(t *testing.T) {
	h := setup(t, options{callbacks: true, engine: briefWindow})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual}) // rings until the test ends
	a, g, _ := h.placeBridged(t)
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = 10 * time.Minute
	tr := h.start(t, req)
	// Settled: the readings' facts of the ringing consult are saved, and
	// nothing changes while it rings.
	ringing := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool {
		return x.Legs.Consult.CallID != "" && x.Seen.Consult && x.Seen.Held
	})
	if ringing.ProviderNotes != "" {
		t.Fatalf("notes %q saved before any callback", ringing.ProviderNotes)
	}
	leg := ringing.Legs.Consult.CallID

	// The consult's callbackUrl, as transferd sent it: it names the
	// transfer and carries its token.
	var url string
	for _, r := range h.sim.Requests() {
		if r.Operation == bwsim.OpCreateCall && strings.Contains(r.Body, `"to":"`+target+`"`) {
			_, rest, _ := strings.Cut(r.Body, `"callbackUrl":"`)
			url, _, _ = strings.Cut(rest, `"`)
		}
	}
	if url == "" {
		t.Fatal("no callbackUrl in the consult's create")
	}
	cb := httptest.NewRequest(http.MethodPost, url[strings.Index(url, "/callbacks/"):],
		strings.NewReader(`{"eventType":"speak","callId":"`+leg+`"}`))
	rec := httptest.NewRecorder()
	h.mu.Lock()
	handler := h.callbacks
	h.mu.Unlock()
	handler.ServeHTTP(rec, cb)
	if rec.Code != http.StatusOK {
		t.Fatalf("the callback was answered %d: %s", rec.Code, rec.Body)
	}

	// The record saved once the woken reconcile ended: all a process
	// resuming the transfer would have. The note is its one change.
	want := "leg=" + leg
	stored := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.ProviderNotes != "" })
	if stored.ProviderNotes != want || stored.Version != ringing.Version+1 || stored.State != ringing.State {
		t.Errorf("saved at version %d (ringing at %d), %s, notes %q; want the next version, %s, notes %q",
			stored.Version, ringing.Version, stored.State, stored.ProviderNotes, ringing.State, want)
	}
}
