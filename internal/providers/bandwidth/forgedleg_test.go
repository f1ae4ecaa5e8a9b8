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

// A callback posted to a transfer's URL (its token valid: a replay, or a
// post by someone who saw the URL in the account's call records) names
// another live call as the transfer's leg, while the transfer's answer is
// lost. The leg was taken on the callback's word, and the transfer reported
// the caller connected to the target (completed) while the target still
// rang. A call that can be read is taken only if it carries the transfer's
// callbackUrl: the transfer follows its own leg, and ends when the consult
// times out, the caller given back.
func TestACallbackNamingAnotherCallIsNotTakenForTheTransfersLeg(t *testing.T) {
	h := setup(t, options{callbacks: true, engine: func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second },
		sim: bwsim.Config{TransferFailure: bwsim.TransferFailureRestore}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	other, err := h.sim.PlaceCall(bwsim.InboundCall{From: "+15555550199", To: owned})
	if err != nil {
		t.Fatal(err)
	}
	loseTransferAnswer(t, h, a, func() {
		// The callbackUrl transferd sent names the transfer and carries
		// its token.
		var url string
		for _, r := range h.sim.Requests() {
			if r.Operation == bwsim.OpTransfer {
				_, rest, _ := strings.Cut(r.Body, `"callbackUrl":"`)
				url, _, _ = strings.Cut(rest, `"`)
			}
		}
		path := url[strings.Index(url, "/callbacks/"):]
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"eventType":"answer","callId":"`+other.ID+`"}`))
		rec := httptest.NewRecorder()
		h.mu.Lock()
		cb := h.callbacks
		h.mu.Unlock()
		cb.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("the forged callback was answered %d: %s", rec.Code, rec.Body)
		}
	})
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Second
	tr := h.end(t, h.start(t, req).ID)
	h.idle(t)
	if tr.Legs.Consult.CallID == other.ID || tr.State == orchestrator.StateCompleted {
		t.Fatalf("the transfer took the call a callback named (%s) for its leg: state %s, leg %s, outcome %+v",
			other.ID, tr.State, tr.Legs.Consult.CallID, tr.Outcome)
	}
	if b := transferLeg(t, h, a); tr.Legs.Consult.CallID != b.ID {
		t.Errorf("the transfer's leg is %q, want its own %s", tr.Legs.Consult.CallID, b.ID)
	}
}
