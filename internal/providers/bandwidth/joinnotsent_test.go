package bandwidth_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Found by a fifth review. The attended join's first request
// (release_consult: T leaves b2) is answered 503 on every attempt, so
// completeAttended returns before the join (b1 := {A, T}) is ever sent.
// The error is transient, so the engine kept Sent.Join ("the join may have
// happened"), and a caller who then hung up was reported "the outcome
// cannot be verified", although no request that could connect the caller
// to the target ever reached the platform. Now the adapter marks such an
// error orchestrator.NotSent: the join is owed again while the failure may
// pass, and the outcome is known.
func TestAttendedJoinNeverSentThenCallerGoneIsKnowable(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) {
		c.VerifyTimeout, c.StepTimeout = 300*time.Millisecond, time.Second
	}})
	a, g, b1 := h.placeBridged(t)
	release := func(method, path, body string) bool {
		return method == http.MethodPost && strings.HasPrefix(path, "/users/"+userID+"/bridges/") &&
			path != "/users/"+userID+"/bridges/"+b1.ID && jsonEqual(body, map[string]any{"callIds": []any{g.ID}})
	}
	var releases, joins atomic.Int32
	h.faultEach(release, bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: http.StatusServiceUnavailable, Count: 1})
	h.mu.Lock()
	h.hooks = append(h.hooks, &hook{match: release, run: func() { releases.Add(1) }, every: true},
		&hook{match: func(method, path, body string) bool {
			return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+b1.ID && strings.Contains(body, a.ID) && !strings.Contains(body, g.ID) &&
				strings.Count(body, `"c-`) == 2
		}, run: func() { joins.Add(1) }, every: true})
	h.mu.Unlock()
	// Once the join step has given up (every attempt of the release
	// refused), the caller hangs up before the next reading.
	h.before(func(method, _, _ string) bool { return method == http.MethodGet && releases.Load() >= 3 }, func() {
		if err := h.sim.Hangup(a.ID); err != nil {
			t.Error(err)
		}
	})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if releases.Load() < 3 {
		t.Fatalf("setup: %d releases", releases.Load())
	}
	if n := joins.Load(); n != 0 {
		t.Fatalf("setup: the join was sent %d times", n)
	}
	o := tr.Outcome
	if !o.Verified || strings.Contains(o.Detail, "cannot be verified") {
		t.Errorf("no join request ever reached the platform, yet the outcome is unverifiable: state %s outcome %+v", tr.State, o)
	}
}
