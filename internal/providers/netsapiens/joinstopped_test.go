package netsapiens_test

import (
	"context"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// A join between calls on two core servers whose every process is
// stopped right after its join went out (before its answer is saved), or
// whose first process is stopped before its join went out (its intent
// saved), completes on every side of the hostname guess (nssim's
// HostnameMatch and WrongHostname, and which core JoinHostname names
// first): the process after a stopped one sends the form the stopped one
// did not (orchestrator.JoinRetrier), and the first once more should that
// not take (the first may never have gone out), so two stopped processes
// get both cores named; a wrong hostname refused (400) is followed by the
// other within the same join. The last process finds the caller with the
// target, and no call but the caller's is left up. A stopped process
// moves the clock a step timeout ahead first: its join counts as possibly
// sent until then, so the next process judges it a visibility window
// later without waiting out the step timeout. Before the join's other
// form followed a stopped process's, a PBX ignoring the first core named
// was sent that join by every process a stop cut short.
func TestJoinStoppedAfterEachSendCompletesOnEverySide(t *testing.T) {
	for _, match := range []string{nssim.HostnameOfOriginal, nssim.HostnameOfDestination} {
		for _, wrong := range []string{nssim.HostnameReject, nssim.HostnameIgnore} {
			for _, names := range []string{netsapiens.JoinHostnameCaller, netsapiens.JoinHostnameConsult} {
				for _, point := range []string{"transfer:effect", "transfer:intent"} {
					t.Run(match+"/"+wrong+"/names-"+names+"/"+point, func(t *testing.T) {
						// Whether the first join names the core the PBX wants.
						right := (match == nssim.HostnameOfOriginal) == (names == netsapiens.JoinHostnameCaller)
						sim, srv := newSimServer(t, nssim.Config{HostnameMatch: match, WrongHostname: wrong}, nil)
						store := orchestratortest.NewSaved(memory.New())
						clock := &aheadClock{}
						// process starts an engine (the same owner each time, as
						// a process restarted in its place) whose worker, when
						// stops is set, stops for good the first time it reaches
						// point with a join; hit is closed then.
						process := func(stops bool, point string) (h *harness, hit chan struct{}) {
							hit, release := make(chan struct{}), make(chan struct{})
							var once sync.Once
							h = newHarnessWith(t, sim, srv, store, store, "x", netsapiens.Config{JoinHostname: names, Now: clock.Now},
								func(c *orchestrator.Config) {
									c.Clock = clock.Now
									if !stops {
										return
									}
									c.CrashPoint = func(_ *orchestrator.Transfer, at string) {
										if at != point {
											return
										}
										once.Do(func() {
											clock.mu.Lock()
											clock.ahead += orchestrator.DefaultStepTimeout
											clock.mu.Unlock()
											close(hit)
										})
										<-release
									}
								})
							// Registered after the engine's shutdown, so run before
							// it: the shutdown waits for the stopped worker.
							t.Cleanup(func() { close(release) })
							return h, hit
						}
						first, hit := process(true, point)
						orig := first.placeCall(t)
						id := first.start(t, orchestrator.CompletionAuto, 0).ID
						<-hit
						// The second process stops after its join too, unless it
						// finds the first's join taken and ends the transfer.
						for _, stops := range []bool{true, false} {
							h, hit := process(stops, "transfer:effect")
							if err := h.eng.Open(context.Background()); err != nil {
								t.Fatal(err)
							}
							if !stoppedOrEnded(h, id, hit) {
								break
							}
						}
						tr := store.WaitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
						first1, other := joinCores(t, tr, names)
						// One join naming the core the PBX wants, after one
						// naming the other where the first named is wrong: in
						// the same step where the PBX refuses it, from the next
						// process where it ignores it. A first join that never
						// went out is followed by the other form, and by the
						// first once more where the other names the wrong core.
						want := []string{first1}
						if !right {
							want = append(want, other)
						}
						if point == "transfer:intent" {
							want = want[1:]
							if right {
								want = append(want, other, first1)
							}
						}
						assertJoinsNamed(t, sim, want)
						assertCompleted(t, tr)
						assertJoined(t, first, orig, "1010")
					})
				}
			}
		}
	}
}

// stoppedOrEnded waits until h's worker has stopped (hit closed: true) or
// the transfer id has ended with no cleanup owed (false).
func stoppedOrEnded(h *harness, id string, hit <-chan struct{}) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = h.eng.Wait(ctx, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	}()
	select {
	case <-hit:
		cancel()
		<-ended
		return true
	case <-ended:
		return false
	}
}
