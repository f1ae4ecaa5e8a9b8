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

// A join (b1's membership: the caller with the consult) is retried after
// a transient failure, being absolute. Its first answer was lost after the
// platform applied it, and the retry was refused (4xx): the refusal spoke
// for the retry only. Taken for "the join was refused", the transfer was
// undone while b1 could not be read: the target, who carried the caller,
// was hung up and the caller put back with the agent. It must complete,
// whether b1 can be read at once or only after a while.
func TestAJoinWhoseRetryIsRefusedAfterALostAnswerIsNotUndone(t *testing.T) {
	for _, unreadable := range []bool{false, true} {
		name := "b1 readable"
		if unreadable {
			name = "b1 unreadable for a while"
		}
		t.Run(name, func(t *testing.T) {
			h := setup(t, options{engine: func(c *orchestrator.Config) {
				c.VerifyTimeout = 500 * time.Millisecond
				c.VisibilityWindow = 200 * time.Millisecond
				c.TombstoneTTL = time.Second
			}})
			a, g, b1 := h.placeBridged(t)
			h.before(func(method, path, body string) bool {
				return method == http.MethodPost && strings.HasSuffix(path, "/bridges/"+b1.ID) && strings.Contains(body, `"bridgeAudio":true`) &&
					!strings.Contains(body, g.ID)
			}, func() {
				h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpUpdateBridge, Drop: true, Apply: true, Count: 1})
				h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 400, Code: "bridge-invalid-operation", Count: 1})
				if unreadable {
					h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpGetBridge, Status: 503, Count: 20})
				}
			})
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			h.idle(t)
			if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
				t.Fatalf("the join was applied: the transfer ended %s (%+v, undone by %v), the caller with the target: %v",
					tr.State, tr.Outcome, undos(tr), h.sim.Connected(a.ID, tr.Legs.Consult.CallID))
			}
			joins := 0
			for _, c := range h.commands(t) {
				if c.Path == "/bridges/"+b1.ID && c.Body["bridgeAudio"] == true && !strings.Contains(c.String(), g.ID) {
					joins++
				}
			}
			if joins < 2 {
				t.Errorf("joins sent = %d: the refused retry the test is about never happened", joins)
			}
		})
	}
}

// padded answers with a body longer than transferd reads after the
// response's own.
type padded struct{ http.ResponseWriter }

func (w padded) WriteHeader(code int) {
	w.Header().Del("Content-Length")
	w.ResponseWriter.WriteHeader(code)
	_, _ = w.ResponseWriter.Write([]byte(strings.Repeat(" ", 2<<20)))
}

// A transfer (announced) answered 201 with its Location and a body too
// long to read was carried out: the new leg's id is in the header. Taken
// for refused (the body's length is the same on every attempt), the
// transfer was given up while the platform rang the target for the
// caller.
func TestATransferAnsweredWithABodyTooLongIsCarriedOut(t *testing.T) {
	var aID atomic.Value
	aID.Store("")
	h := setup(t, options{respond: func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if id := aID.Load().(string); id != "" && r.Method == http.MethodPost && r.URL.Path == basePath+"/users/"+userID+"/calls/"+id {
			return padded{w}
		}
		return w
	}})
	a := h.placeCall(t)
	aID.Store(a.ID)
	tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, transferLeg(t, h, a).ID) {
		t.Fatalf("state %s outcome %+v, want completed with the caller and the target", tr.State, tr.Outcome)
	}
	if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
		t.Errorf("transfers sent = %d, want 1", n)
	}
}

// The same answer while the platform lists the new leg only after a
// while: the leg could not be found by the listing, and the transfer,
// taken for refused ("nothing was created"), ended failed, verified, the
// caller "restored", while the platform rang the target and connected the
// caller to it. The id is in the Location header; the body is not used.
func TestATransferAnsweredWithABodyTooLongIsCarriedOutWhileNotListed(t *testing.T) {
	var aID atomic.Value
	aID.Store("")
	h := setup(t, options{sim: bwsim.Config{ListingDelay: time.Hour}, respond: func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if id := aID.Load().(string); id != "" && r.Method == http.MethodPost && r.URL.Path == basePath+"/users/"+userID+"/calls/"+id {
			return padded{w}
		}
		return w
	}})
	a := h.placeCall(t)
	aID.Store(a.ID)
	tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
	h.idle(t)
	b := transferLeg(t, h, a)
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, b.ID) || tr.Legs.Consult.CallID != b.ID {
		t.Fatalf("state %s outcome %+v leg %q; the caller with the target %s: %v", tr.State, tr.Outcome, tr.Legs.Consult.CallID,
			b.ID, h.sim.Connected(a.ID, b.ID))
	}
}
