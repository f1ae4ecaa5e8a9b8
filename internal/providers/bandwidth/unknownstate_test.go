package bandwidth_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// rewriting replaces old by new in what it writes.
type rewriting struct {
	http.ResponseWriter
	old, new []byte
}

func (w rewriting) Write(p []byte) (int, error) {
	_, err := w.ResponseWriter.Write(bytes.ReplaceAll(p, w.old, w.new))
	return len(p), err
}

// A consult leg that reads a state transferd does not know ("error", a
// value of the C# SDK's CallState no document mentions) while it rings is
// in an unknown state, not ended. Taken for ended, the announced transfer
// failed (consult_failed) with its B-leg left ringing, and the attended
// one hung up a target that was about to answer. Here the leg reads
// "error" three times, then its true state again: the target answers and
// the transfer completes, in both modes.
func TestAConsultLegInAStateTransferdDoesNotKnowIsNotTakenForEnded(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.ModeAnnounced, orchestrator.ModeAttended} {
		t.Run(string(mode), func(t *testing.T) {
			var (
				mu      sync.Mutex
				legPath string
				left    = 400
			)
			rewritten := make(chan struct{})
			h := setup(t, options{engine: func(c *orchestrator.Config) {
				c.VerifyTimeout = 300 * time.Millisecond
				c.VisibilityWindow = 100 * time.Millisecond
				c.TombstoneTTL = time.Second
			}, respond: func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
				mu.Lock()
				defer mu.Unlock()
				if legPath == "" || left == 0 || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, legPath) {
					return w
				}
				if left--; left == 0 {
					close(rewritten)
				}
				return rewriting{w, []byte(`"state":"started"`), []byte(`"state":"error"`)}
			}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			var req orchestrator.Request
			if mode == orchestrator.ModeAttended {
				a, g, _ := h.placeBridged(t)
				req = attendedReq(a, g, orchestrator.CompletionAuto)
			} else {
				req = announcedReq(h.placeCall(t), target)
			}
			req.ConsultTimeout = time.Minute
			tr := h.start(t, req)
			tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
			leg := tr.Legs.Consult.CallID
			mu.Lock()
			legPath = "/calls/" + leg
			mu.Unlock()
			select {
			case <-rewritten:
			case <-time.After(30 * time.Second):
				t.Fatal("the consult leg was never read")
			}
			if c := mustCall(t, h, leg); c.Ended() {
				t.Fatalf("the consult leg %s, which rang, was ended (%s) while it read a state transferd does not know", leg, c.State)
			}
			if err := h.sim.Answer(target); err != nil {
				t.Fatal(err)
			}
			tr = h.end(t, tr.ID)
			if tr.State != orchestrator.StateCompleted {
				t.Errorf("state %s outcome %+v, want completed", tr.State, tr.Outcome)
			}
		})
	}
}
