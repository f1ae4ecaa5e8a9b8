package netsapiens_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A client may ask for the transfer as soon as its agent answers, and a
// PBX may list a new call only after a moment: the first listing the
// locate reads does not show the call yet. Not listed yet is not gone.
// Before, that listing failed the transfer at once, call_not_found; the
// locate now looks again for the visibility window.
func TestACallListedLateIsFoundByTheLocate(t *testing.T) {
	var hidden atomic.Int32
	wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/domains/"+domain+"/calls") && hidden.CompareAndSwap(0, 1) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, "[]")
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h := setupWrapped(t, nssim.Config{}, wrap)
	orig := h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if hidden.Load() != 1 {
		t.Fatal("no listing was hidden: the test did not reach its case")
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}

// The other side: a call that is not there is still call_not_found, once
// the visibility window has passed, with nothing sent but readings.
func TestACallNeverListedIsNotFound(t *testing.T) {
	h := setup(t, nssim.Config{})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome == nil || tr.Outcome.Reason != orchestrator.ReasonCallNotFound || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v, want failed call_not_found with the caller untouched", tr.State, tr.Outcome)
	}
	for _, c := range commands(h.sim.Requests()) {
		if !strings.HasPrefix(c, "GET ") {
			t.Errorf("a transfer whose call was never found sent %s", c)
		}
	}
}

// A client may ask for the transfer as soon as its agent answers, and a
// PBX's listing may lag a session's update as it lags a new session (the
// premise of the callers' read by id: a row being rewritten): the first
// listing the locate reads still shows the agent's leg ringing. Not shown
// answered yet is not "not active": the call was answered a moment ago.
// Before, that listing failed the transfer at once, call_not_active,
// while the call was up and active; like a call not listed yet, the
// locate now looks again for the visibility window of the request.
func TestACallShownAnsweredLateIsLocated(t *testing.T) {
	var rewritten atomic.Int32
	wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" || rewritten.Load() != 0 {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				for _, row := range rows {
					if row["call-term-user"] == "1000" {
						for _, f := range []string{"call-term-info", "term-orig-info"} {
							if _, ok := row[f]; ok {
								row[f] = "alerting"
							}
						}
						rewritten.Store(1)
					}
				}
				return rows
			})
		})
	}
	h := setupWrapped(t, nssim.Config{}, wrap)
	orig := h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if rewritten.Load() != 1 {
		t.Fatal("no listing showed the agent's leg ringing: the test did not reach its case")
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}
