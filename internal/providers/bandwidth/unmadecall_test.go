package bandwidth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// postCallback posts body to the callbackUrl transferd sent with a's
// transfer (its token valid), as the platform, or a replay, would.
func postCallback(t *testing.T, h *harness, body string) {
	t.Helper()
	var url string
	for _, r := range h.sim.Requests() {
		if r.Operation == bwsim.OpTransfer {
			_, rest, _ := strings.Cut(r.Body, `"callbackUrl":"`)
			url, _, _ = strings.Cut(rest, `"`)
		}
	}
	path := url[strings.Index(url, "/callbacks/"):]
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.mu.Lock()
	cb := h.callbacks
	h.mu.Unlock()
	cb.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("the callback was answered %d: %s", rec.Code, rec.Body)
	}
}

// A callback to a transfer's URL names a call the platform never made
// (no such call can be read), with a hangup cause, while the transfer's
// answer is lost and the target has answered: the caller is connected to
// it. The unreadable call was taken for the transfer's leg on the
// callback's word and its cause for the consult's end: the transfer
// failed (consult_failed, BUSY), the caller reported held. The listing
// shows the transfer's own leg, by its callbackUrl, which is taken
// instead, on every side of the guesses of how A reads then.
func TestACallbackNamingACallNeverMadeChangesNoTransfer(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsAlways, bwsim.ALegTransferFieldsWhileTransferring, bwsim.ALegTransferFieldsNever} {
		for _, aLeg := range []string{bwsim.StateTransferring, bwsim.StateActive} {
			t.Run(fields+"/A "+aLeg, func(t *testing.T) {
				t.Parallel()
				h := setup(t, options{callbacks: true, engine: shortWindows,
					sim: bwsim.Config{ALegTransferFields: fields, TransferredALegState: aLeg}})
				h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
				a := h.placeCall(t)
				loseTransferAnswer(t, h, a, func() {
					if err := h.sim.Answer(target); err != nil {
						t.Error(err)
					}
					postCallback(t, h, `{"eventType":"hangup","callId":"c-never-made-by-the-platform","cause":"busy"}`)
				})
				req := announcedReq(a, target)
				req.ConsultTimeout = time.Minute
				tr := h.end(t, h.start(t, req).ID)
				h.idle(t)
				assertTransferred(t, h, tr, a, target)
			})
		}
	}
}
