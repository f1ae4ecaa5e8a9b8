package bandwidth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An attended transfer whose caller hangs up right after the join put
// them with the target, before any reading showed the join: every reading
// from then on shows the caller's call completed, as it would had the
// caller hung up first. The outcome is reported as known (failed, not
// restored), never verified, and final: no reading can tell. Before, it
// was verified, a claim the simulator's truth contradicts.
func TestAttendedCallerGoneRightAfterTheJoinCannotBeVerified(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond }})
	a, g, b1 := h.placeBridged(t)
	var tid atomic.Value // the consult call the join puts with the caller
	h.before(func(method, path, body string) bool {
		var j struct {
			CallIDs []string `json:"callIds"`
		}
		if method != http.MethodPost || path != "/users/"+userID+"/bridges/"+b1.ID ||
			json.Unmarshal([]byte(body), &j) != nil || len(j.CallIDs) != 2 || j.CallIDs[0] != a.ID {
			return false
		}
		tid.Store(j.CallIDs[1])
		return true
	}, func() {})
	var withTarget atomic.Bool
	h.before(func(method, _, _ string) bool { return method == http.MethodGet && tid.Load() != nil }, func() {
		// The first reading after the join: the caller hangs up once the
		// join has applied, before this reading is answered.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		id := tid.Load().(string)
		if err := h.sim.WaitFor(ctx, func() bool { return h.sim.Connected(a.ID, id) }); err != nil {
			t.Errorf("the join did not apply: %v", err)
			return
		}
		withTarget.Store(true)
		if err := h.sim.Hangup(a.ID); err != nil {
			t.Error(err)
		}
	})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if !withTarget.Load() {
		t.Fatal("the caller was never with the target")
	}
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	o := tr.Outcome
	if tr.State != orchestrator.StateFailed || o.CallerRestored || o.Verified || tr.Cleanup != nil ||
		!strings.Contains(o.Detail, "cannot be verified") {
		t.Fatalf("state %s outcome %+v cleanup %+v; want failed, not restored, unverified for good", tr.State, o, tr.Cleanup)
	}
	h.idle(t)
	if c := mustCall(t, h, tid.Load().(string)); c.State != bwsim.StateCompleted {
		t.Errorf("the consult call is %s", c.State)
	}
}
