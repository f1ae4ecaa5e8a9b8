package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A create refused for the call's transfer is a 409 active-transfer naming
// it; when that transfer has ended but still owes the call its end state
// (orchestrator.Transfer.HoldsCall), the detail says what to wait for.
func TestActiveTransferProblemSaysWhatToWaitFor(t *testing.T) {
	for _, tc := range []struct {
		err  *orchestrator.ActiveTransferError
		want string
	}{
		{&orchestrator.ActiveTransferError{ID: "tr_1"}, "wait for it to end or cancel it"},
		{&orchestrator.ActiveTransferError{ID: "tr_1", CleaningUp: true}, "wait until its outcome is verified"},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/transfers", nil)
		writeError(w, r, &orchestrator.Error{Op: "test", Kind: orchestrator.KindConflict, Err: tc.err})
		var p Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusConflict || p.Type != probActive.Type || p.TransferID != "tr_1" || !strings.Contains(p.Detail, tc.want) {
			t.Errorf("%+v: %d %+v, want 409 active-transfer naming tr_1, detail with %q", tc.err, w.Code, p, tc.want)
		}
	}
}
