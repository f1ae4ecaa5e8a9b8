package netsapiens_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// Which core server a join's hostname must name, when the caller's and the
// consult's sessions are on different cores, is a guess: the caller's (the
// schema's "where the call currently resides"), the consult's, or either;
// and a wrong one is refused (400) or accepted and ignored (nssim's
// HostnameMatch and WrongHostname). On every side where the PBX refuses a
// wrong hostname the transfer completes whatever JoinHostname says: the
// refused join is sent once more naming the other core. Where the PBX
// ignores a wrong one, JoinHostname must name the right one; named wrong,
// the transfer fails with the caller given back, and the join was sent
// once, never again after a 202. Before the fix a PBX that wants the
// consult's core failed every cross-core transfer.
func TestJoinNamesTheCoreServerThePBXWants(t *testing.T) {
	for _, match := range []string{nssim.HostnameOfOriginal, nssim.HostnameOfDestination, nssim.HostnameOfEither} {
		for _, wrong := range []string{nssim.HostnameReject, nssim.HostnameIgnore} {
			for _, names := range []string{netsapiens.JoinHostnameCaller, netsapiens.JoinHostnameConsult} {
				t.Run(match+"/"+wrong+"/names-"+names, func(t *testing.T) {
					// The side's right core, and whether the first join names it.
					right := match == nssim.HostnameOfEither ||
						(match == nssim.HostnameOfOriginal) == (names == netsapiens.JoinHostnameCaller)
					sim, srv := newSimServer(t, nssim.Config{HostnameMatch: match, WrongHostname: wrong}, nil)
					store := orchestratortest.NewSaved(memory.New())
					h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{JoinHostname: names},
						func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
					orig := h.placeCall(t)
					tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
					if tr.Legs.Caller.Server == "" || strings.EqualFold(tr.Legs.Caller.Server, tr.Legs.Consult.Server) {
						t.Fatalf("setup: caller on %q, consult on %q; want two cores", tr.Legs.Caller.Server, tr.Legs.Consult.Server)
					}
					var hosts []string
					for _, r := range sim.Requests() {
						if r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/transfer") {
							hosts = append(hosts, r.Body)
						}
					}
					wantJoins := 1
					if !right && wrong == nssim.HostnameReject {
						wantJoins = 2
					}
					if len(hosts) != wantJoins {
						t.Errorf("%d joins sent, want %d: %q", len(hosts), wantJoins, hosts)
					}
					if !right && wrong == nssim.HostnameIgnore {
						// Accepted and never applied: nothing tells the PBX
						// wanted the other core, and a second join after a
						// 202 could join twice.
						if tr.State != orchestrator.StateFailed || !tr.Outcome.CallerRestored || !tr.Outcome.Verified {
							t.Fatalf("state %s outcome %+v; want failed, caller restored, verified", tr.State, tr.Outcome)
						}
						// The operator is told which core the join named and
						// the setting that names the other.
						setting := netsapiens.JoinHostnameConsult
						if names == netsapiens.JoinHostnameConsult {
							setting = netsapiens.JoinHostnameCaller
						}
						if d := tr.Outcome.Detail; !strings.Contains(d, "TRANSFERD_NETSAPIENS_JOIN_HOSTNAME") || !strings.HasSuffix(d, " to "+setting) {
							t.Errorf("the outcome does not point at the setting: %q", d)
						}
						assertRestored(t, h, orig)
						return
					}
					assertCompleted(t, tr)
					assertJoined(t, h, orig, "1010")
				})
			}
		}
	}
}
