package bandwidth_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A transfer is an update of the caller's call, and an answer whose
// Location names the resource it updated (as a generic REST layer writes
// one) rather than the new leg is not ruled out: the new leg's id in the
// Location is pinned by SDK fixtures and a maintainer's word, never by a
// recorded answer (notes §3.5). Taken for the new leg, the caller's own
// call, read "transferring", was a live consult: the transfer reported
// completed, verified, at its first reading, while the target still
// rang. Such an answer says nothing of the new leg's id, as one without
// a Location: the leg is looked for, and the transfer follows it.
func TestATransferAnsweredWithALocationNamingTheCallerItselfIsNotTakenForItsLeg(t *testing.T) {
	for _, c := range []struct {
		name      string
		callbacks bool
	}{{"callbacks", true}, {"polling", false}} {
		t.Run(c.name, func(t *testing.T) {
			var callerPath atomic.Value // string
			callerPath.Store("")
			h := setup(t, options{callbacks: c.callbacks, respond: func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
				if p := callerPath.Load().(string); r.Method == http.MethodPost && p != "" && r.URL.Path == p {
					return selfLocation{w, "http://" + r.Host + r.URL.Path}
				}
				return w
			}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			a := h.placeCall(t)
			callerPath.Store(basePath + "/users/" + userID + "/calls/" + a.ID)
			tr := h.start(t, announcedReq(a, target))
			tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.Consult })
			if tr.State.Terminal() {
				t.Fatalf("the transfer ended %s (%+v) while the target rang", tr.State, tr.Outcome)
			}
			b := transferLeg(t, h, a)
			if tr.Legs.Consult.CallID != b.ID {
				t.Fatalf("the transfer follows leg %q, want the new leg %s", tr.Legs.Consult.CallID, b.ID)
			}
			if err := h.sim.Answer(target); err != nil {
				t.Fatal(err)
			}
			tr = h.end(t, tr.ID)
			assertTransferred(t, h, tr, a, target)
			if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
				t.Errorf("transfers sent = %d, want 1", n)
			}
		})
	}
}

// selfLocation answers with a Location naming the request's own resource.
type selfLocation struct {
	http.ResponseWriter
	self string
}

func (w selfLocation) WriteHeader(code int) {
	if strings.TrimSpace(w.Header().Get("Location")) != "" {
		w.Header().Set("Location", w.self)
	}
	w.ResponseWriter.WriteHeader(code)
}
