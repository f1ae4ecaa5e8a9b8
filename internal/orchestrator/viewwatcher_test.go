package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// watchedFake is a Fake that is told which views are watched, as the
// NetSapiens adapter is to keep its event subscriptions.
type watchedFake struct {
	*orchestratortest.Fake
	told chan string
}

func (w watchedFake) WatchStarted(key string) { w.told <- "started " + key }
func (w watchedFake) WatchStopped(key string) { w.told <- "stopped " + key }

var _ orchestrator.ViewWatcher = watchedFake{}

// TestViewWatcherIsToldWhenAViewStartsAndStops: the first transfer of a
// view starts its watch, the view's watch stops once no transfer needs it,
// and a later transfer starts it again, each told once and in order.
func TestViewWatcherIsToldWhenAViewStartsAndStops(t *testing.T) {
	f := orchestratortest.NewFake("fake")
	f.SetTarget(orchestratortest.TargetRings)
	p := watchedFake{Fake: f, told: make(chan string, 16)}
	e, err := orchestrator.New(testConfig(), memory.New(), []orchestrator.Provider{p}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-p.told:
			if got != want {
				t.Fatalf("told %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("never told %q", want)
		}
	}
	consultAndCancel := func() {
		t.Helper()
		r := request("fake", "1000")
		r.Completion = orchestrator.CompletionManual
		tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := e.Wait(ctx, tr.ID, inState(orchestrator.StateConsulting)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Cancel(ctx, tr.ID); err != nil {
			t.Fatal(err)
		}
		if tr, err = e.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !tr.State.Terminal() {
			t.Fatalf("cancel: %v, state %v", err, tr.State)
		}
	}
	consultAndCancel()
	expect("started ")
	expect("stopped ")
	consultAndCancel()
	expect("started ")
	expect("stopped ")
	select {
	case got := <-p.told:
		t.Fatalf("told %q after the second stop", got)
	default:
	}
}
