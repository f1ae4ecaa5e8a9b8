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

// A transfer's answer is lost, the target is busy, and the platform ends
// the caller's call as the transfer fails (TransferFailure "hangup", the
// default guess). Polling, the leg is looked for only while it is live
// (an ended one may be an earlier attempt's), and only while the caller's
// call names the transfer: none was found, and the caller's call ended
// was taken for the caller hanging up, caller_hung_up, verified, whatever
// the call shows of its transfer (bwsim ALegTransferFields). The outcome
// now says it cannot be verified, final. With a callbackUrl the leg is
// found, ended, by it, and says busy, verified. The other side: the
// transfer was lost before the platform applied it, and the caller hangs
// up; no call to the target is listed, and the caller did hang up:
// caller_hung_up, verified, either way.
func TestALostAnswerAndAnEndedCallerIsNotTheCallerHangingUp(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsAlways, bwsim.ALegTransferFieldsWhileTransferring, bwsim.ALegTransferFieldsNever} {
		for _, public := range []bool{false, true} {
			for _, applied := range []bool{true, false} {
				name := fields + "/polling"
				if public {
					name = fields + "/callbacks"
				}
				if !applied {
					name += "/not applied, the caller hangs up"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h := setup(t, options{callbacks: public, sim: bwsim.Config{ALegTransferFields: fields},
						engine: func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second }})
					h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
					a := h.placeCall(t)
					if applied {
						loseTransferAnswer(t, h, a, nil)
					} else {
						var sent atomic.Bool
						h.before(func(method, path, body string) bool {
							return method == http.MethodPost && path == "/users/"+userID+"/calls/"+a.ID && strings.Contains(body, "transferring")
						}, func() {
							h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpTransfer, Drop: true, Count: 1})
							sent.Store(true)
						})
						h.before(func(method, path, _ string) bool {
							return sent.Load() && method == http.MethodGet && path == "/users/"+userID+"/calls/"+a.ID
						}, func() {
							if err := h.sim.Hangup(a.ID); err != nil {
								t.Error(err)
							}
						})
					}
					req := announcedReq(a, target)
					req.ConsultTimeout = time.Minute
					tr := h.end(t, h.start(t, req).ID)
					tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
					h.idle(t)
					if !mustCall(t, h, a.ID).Ended() {
						t.Fatalf("setup: the caller's call should have ended: %+v", h.sim.Calls())
					}
					o := tr.Outcome
					switch {
					case !applied:
						if len(h.sim.Calls()) != 1 {
							t.Fatalf("setup: the transfer made a leg: %+v", h.sim.Calls())
						}
						if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonCallerHungUp || !o.Verified {
							t.Fatalf("the caller hung up, and no transfer was made: state %s outcome %+v", tr.State, o)
						}
					case public:
						if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonBusy || !o.Verified || o.CallerRestored {
							t.Fatalf("the leg, found by its callbackUrl, says busy: state %s outcome %+v", tr.State, o)
						}
					default:
						if tr.State != orchestrator.StateFailed || o.Reason == orchestrator.ReasonCallerHungUp || o.Verified || o.CallerRestored ||
							!strings.Contains(o.Detail, "cannot be verified") {
							t.Fatalf("the platform ended the caller's call for a busy target, and polling cannot find the leg: state %s outcome %+v, "+
								"want failed, unverified and final, not caller_hung_up", tr.State, o)
						}
					}
				})
			}
		}
	}
}
