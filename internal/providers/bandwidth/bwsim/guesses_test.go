package bwsim

import (
	"net/http"
	"strings"
	"testing"
)

// TestControlGuesses switches a guess at run time through the control surface: the next
// transfer leg that fails follows it, a bad value is refused and changes nothing, and DELETE
// puts back the guesses the simulator was made with.
func TestControlGuesses(t *testing.T) {
	e := newEnv(t, Config{TimeoutHangupCause: TimeoutHangupNone})
	want := Guesses{TransferFailure: TransferFailureHangup, TransferredALegState: StateTransferring,
		ALegTransferFields: ALegTransferFieldsAlways, TimeoutHangupCause: TimeoutHangupNone,
		TransferLegCallback: TransferLegCallbackALeg, ForbiddenCategory: DefaultForbiddenCategory,
		TransferLegFrom: TransferLegFromAsGiven}
	if got := decodeJSON[Guesses](t, e.control(http.MethodGet, "/config/guesses", "")); got != want {
		t.Fatalf("guesses at start %+v, want %+v", got, want)
	}
	// failTransfer transfers a new inbound call to a busy target and returns the A-leg once
	// the B-leg ended.
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeBusy})
	failTransfer := func() Call {
		t.Helper()
		a := e.inbound()
		r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
		e.wantStatus(r, http.StatusCreated)
		e.waitState(r.id(), StateCompleted)
		return e.call(a.ID)
	}
	if a := failTransfer(); a.State != StateCompleted {
		t.Fatalf("A after a failed transfer, hang-up policy: %s", a.State)
	}

	r := e.control(http.MethodPut, "/config/guesses", `{"transfer_failure":"restore","transferred_a_leg_state":"active"}`)
	e.wantStatus(r, http.StatusOK)
	got := decodeJSON[Guesses](t, r)
	// Absent fields take their default: the timeout's hang-up cause is NO_ANSWER now.
	if got.TransferFailure != TransferFailureRestore || got.TransferredALegState != StateActive || got.TimeoutHangupCause != CauseNoAnswer {
		t.Errorf("PUT answered %+v", got)
	}
	if a := failTransfer(); a.State != StateActive {
		t.Errorf("A after a failed transfer, restore policy: %s, want active", a.State)
	}

	for _, bad := range []string{`{"transfer_failure":"shrug"}`, `{"timeout_hangup_cause":"no answer"}`, `{"colour":"red"}`, `{"transfer_failure":`} {
		r := e.control(http.MethodPut, "/config/guesses", bad)
		e.wantStatus(r, http.StatusBadRequest)
		if bad == `{"transfer_failure":"shrug"}` && !strings.Contains(string(r.body), "TransferFailure") {
			t.Errorf("PUT %s: error %s does not name the field", bad, r.body)
		}
	}
	if got := e.sim.Guesses(); got.TransferFailure != TransferFailureRestore {
		t.Errorf("a refused PUT changed the guesses: %+v", got)
	}

	e.wantStatus(e.control(http.MethodDelete, "/config/guesses", ""), http.StatusNoContent)
	if got := e.sim.Guesses(); got != want {
		t.Errorf("after DELETE %+v, want the configured %+v", got, want)
	}
	if a := failTransfer(); a.State != StateCompleted {
		t.Errorf("A after a failed transfer once DELETEd: %s", a.State)
	}
}
