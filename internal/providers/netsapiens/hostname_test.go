package netsapiens_test

import (
	"net/http"
	"strings"
	"testing"

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
// HostnameMatch and WrongHostname). On every side, and whichever core
// JoinHostname names first, the transfer completes: a join refused is sent
// again at once naming the other core (one step), and one accepted that a
// reading shows did not take is sent again in its second form, naming the
// other core first (orchestrator.JoinRetrier). Never more than two joins.
// Before the fix a PBX that wants the consult's core failed every
// cross-core transfer.
func TestJoinNamesTheCoreServerThePBXWants(t *testing.T) {
	for _, match := range []string{nssim.HostnameOfOriginal, nssim.HostnameOfDestination, nssim.HostnameOfEither} {
		for _, wrong := range []string{nssim.HostnameReject, nssim.HostnameIgnore} {
			for _, names := range []string{netsapiens.JoinHostnameCaller, netsapiens.JoinHostnameConsult} {
				t.Run(match+"/"+wrong+"/names-"+names, func(t *testing.T) {
					// Whether the first join names the core the PBX wants.
					right := match == nssim.HostnameOfEither ||
						(match == nssim.HostnameOfOriginal) == (names == netsapiens.JoinHostnameCaller)
					sim, srv := newSimServer(t, nssim.Config{HostnameMatch: match, WrongHostname: wrong}, nil)
					store := orchestratortest.NewSaved(memory.New())
					h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{JoinHostname: names})
					orig := h.placeCall(t)
					tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
					first, other := joinCores(t, tr, names)
					want := []string{first}
					if !right {
						want = append(want, other)
					}
					assertJoinsNamed(t, sim, want)
					assertCompleted(t, tr)
					assertJoined(t, h, orig, "1010")
					if again := !tr.Sent.JoinFirst.IsZero(); again != (!right && wrong == nssim.HostnameIgnore) {
						t.Errorf("the join's second form sent: %v", again)
					}
				})
			}
		}
	}
}

// joinCores returns the core servers tr's joins name first and second
// (names: Config.JoinHostname), failing the test unless the caller and
// the consult are on different cores.
func joinCores(t *testing.T, tr *orchestrator.Transfer, names string) (first, other string) {
	t.Helper()
	if tr.Legs.Caller.Server == "" || strings.EqualFold(tr.Legs.Caller.Server, tr.Legs.Consult.Server) {
		t.Fatalf("setup: caller on %q, consult on %q; want two cores", tr.Legs.Caller.Server, tr.Legs.Consult.Server)
	}
	first, other = tr.Legs.Caller.Server, tr.Legs.Consult.Server
	if names == netsapiens.JoinHostnameConsult {
		first, other = other, first
	}
	return first, other
}

// assertJoinsNamed checks that the joins sim received named the core
// servers want, in order.
func assertJoinsNamed(t *testing.T, sim *nssim.Sim, want []string) {
	t.Helper()
	var joins []string
	for _, r := range sim.Requests() {
		if r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/transfer") {
			joins = append(joins, r.Body)
		}
	}
	if len(joins) != len(want) {
		t.Fatalf("%d joins sent, want %d naming %q: %q", len(joins), len(want), want, joins)
	}
	for i, host := range want {
		if !strings.Contains(joins[i], `"hostname":"`+host+`"`) {
			t.Errorf("join %d is %s, want it to name %s", i+1, joins[i], host)
		}
	}
}
