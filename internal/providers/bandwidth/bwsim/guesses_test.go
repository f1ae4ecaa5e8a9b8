package bwsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
		if bad == `{"transfer_failure":"shrug"}` && !strings.Contains(string(r.body), "transfer_failure") {
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

// A guess refused on the control surface is named as the client sent it, by its JSON name,
// never by the Go field behind it, and the error lists the values it accepts.
func TestGuessErrorsNameTheJSONField(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		body   string
		goName string // must not appear
		want   []string
	}{
		{`{"transfer_failure":"x"}`, "TransferFailure", []string{`transfer_failure "x"`, `"hangup"`, `"restore"`}},
		{`{"transferred_a_leg_state":"x"}`, "TransferredALegState", []string{`transferred_a_leg_state "x"`, `"transferring"`, `"active"`}},
		{`{"a_leg_transfer_fields":"x"}`, "ALegTransferFields", []string{`a_leg_transfer_fields "x"`, `"always"`, `"while-transferring"`, `"never"`}},
		{`{"timeout_hangup_cause":"no answer"}`, "TimeoutHangupCause", []string{`timeout_hangup_cause "no answer"`, `"NO_ANSWER"`, `"none"`}},
		{`{"transfer_leg_callback":"x"}`, "TransferLegCallback", []string{`transfer_leg_callback "x"`, `"a-leg"`, `"none"`}},
		{`{"transfer_leg_from":"x"}`, "TransferLegFrom", []string{`transfer_leg_from "x"`, `"as-given"`, `"called-number"`, `"anonymous"`}},
		{`{"callback_retries":-1}`, "CallbackRetries", []string{`callback_retries -1: want 0 to 5`}},
		{`{"transfer_failure":1}`, "TransferFailure", []string{`transfer_failure is a string, not a JSON number`}},
		// Two at once: both named.
		{`{"transfer_failure":"x","transfer_leg_from":"y"}`, "TransferLegFrom", []string{`transfer_failure "x"`, `transfer_leg_from "y"`}},
	} {
		r := e.control(http.MethodPut, "/config/guesses", tc.body)
		e.wantStatus(r, http.StatusBadRequest)
		msg := decodeJSON[map[string]string](t, r)["error"]
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("PUT %s: error %q does not say %s", tc.body, msg, w)
			}
		}
		if strings.Contains(msg, tc.goName) || strings.Contains(msg, "Guesses") || strings.Contains(msg, "Go struct") {
			t.Errorf("PUT %s: error %q names a Go field", tc.body, msg)
		}
	}
	// Config.Validate, for a Go caller, names Config's fields.
	if err := (Config{TransferFailure: "x"}).Validate(); err == nil || !strings.Contains(err.Error(), `TransferFailure "x"`) {
		t.Errorf("Config.Validate: %v, want it to name TransferFailure", err)
	}

	// The adversarial behaviours likewise.
	for _, tc := range []struct{ body, want string }{
		{`{"enabled":true,"fault_rate":2}`, "fault_rate 2: want 0 to 1"},
		{`{"read_failure_rate":-1,"lost_response_rate":3}`, "read_failure_rate -1: want 0 to 1; lost_response_rate 3: want 0 to 1"},
		{`{"enabled":"yes"}`, "enabled is a boolean"},
	} {
		r := e.control(http.MethodPut, "/config/adversarial", tc.body)
		e.wantStatus(r, http.StatusBadRequest)
		msg := decodeJSON[map[string]string](t, r)["error"]
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "Rate") || strings.Contains(msg, "Go struct") {
			t.Errorf("PUT /config/adversarial %s: error %q, want it to say %s and name no Go field", tc.body, msg, tc.want)
		}
	}
}

// CallbackRetries is a guess (known unknown 8): switched at run time, an
// event refused after that is posted again to its callbackUrl as many
// times, and DELETE puts back the configured none.
func TestCallbackRetriesIsAGuess(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.control(http.MethodPut, "/config/guesses", `{"callback_retries":2}`)
	e.wantStatus(r, http.StatusOK)
	if got := decodeJSON[Guesses](t, r); got.CallbackRetries != 2 {
		t.Fatalf("guesses after PUT %+v, want callback_retries 2", got)
	}
	failing := newReceiver(t, http.StatusServiceUnavailable)
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+failing.srv.URL+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if got := len(failing.eventTypes(r.id())); got != 3 {
		t.Errorf("posts to the callbackUrl with callback_retries 2: %d, want 3", got)
	}
	e.wantStatus(e.control(http.MethodDelete, "/config/guesses", ""), http.StatusNoContent)
	if got := e.sim.Guesses().CallbackRetries; got != 0 {
		t.Errorf("callback_retries after DELETE %d, want the configured 0", got)
	}
	if err := (Config{CallbackRetries: 6}).Validate(); err == nil || !strings.Contains(err.Error(), "CallbackRetries 6") {
		t.Errorf("Config.Validate of CallbackRetries 6: %v, want it refused", err)
	}
}

// An event is posted again as many times as CallbackRetries said when it
// was emitted: a switch made while its first post is in flight applies to
// the events emitted after it. deliver holds no lock, and read the guess
// as it went, it would race with the switch.
func TestCallbackRetriesAreTheOnesInForceAsTheEventIsEmitted(t *testing.T) {
	e := newEnv(t, Config{})
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var mu sync.Mutex
	var posts []string // each post's event type, in order
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ EventType string }
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		posts = append(posts, ev.EventType)
		first := len(posts) == 1
		mu.Unlock()
		if first {
			close(arrived)
			<-release
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+srv.URL+`"}`)
	e.wantStatus(r, http.StatusCreated)
	<-arrived
	e.wantStatus(e.control(http.MethodPut, "/config/guesses", `{"callback_retries":2}`), http.StatusOK)
	once.Do(func() { close(release) })
	e.idle()
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, p := range posts {
		if p == posts[0] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the %s event, emitted with callback_retries 0, was posted %d times (posts %q), want once", posts[0], n, posts)
	}
}
