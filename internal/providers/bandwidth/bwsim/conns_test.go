package bwsim

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// The default CallbackClient keeps its connections: waves of callbacks from many calls at
// once, each wave held at the receiver until all of it has arrived (so that every wave has
// as many in flight as there are calls), open one connection per call in flight, once. Go's
// default transport keeps two idle connections per host and opened most of each wave anew
// (44 for three waves of 16).
func TestCallbacksReuseConnections(t *testing.T) {
	const calls, waves = 16, 3
	var (
		mu       sync.Mutex
		arrived  int
		released = make(chan struct{})
		conns    atomic.Int64
	)
	rc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wave := released
		if arrived++; arrived%calls == 0 {
			close(released)
			released = make(chan struct{})
		}
		mu.Unlock()
		<-wave
	}))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	rc.Start()
	t.Cleanup(rc.Close)

	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	dial := func() []string {
		ids := make([]string, calls)
		for i := range ids {
			r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+rc.URL+`/cb"}`)
			e.wantStatus(r, http.StatusCreated)
			ids[i] = r.id()
		}
		return ids
	}
	ids := dial()
	if err := e.sim.Answer(target); err != nil { // wave 1: an answer callback each
		t.Fatal(err)
	}
	e.idle()
	for _, id := range ids { // wave 2: a hangup callback each
		e.wantStatus(e.send(http.MethodPost, callPath(id), `{"state":"completed"}`), http.StatusOK)
	}
	e.idle()
	dial()
	if err := e.sim.Answer(target); err != nil { // wave 3
		t.Fatal(err)
	}
	e.idle()

	if n := len(e.sim.Callbacks()); n != calls*waves {
		t.Fatalf("%d callbacks made, want %d", n, calls*waves)
	}
	for _, cb := range e.sim.Callbacks() {
		if !cb.Delivered() {
			t.Fatalf("callback not delivered: %+v", cb)
		}
	}
	if n := conns.Load(); n > calls {
		t.Errorf("%d connections for %d waves of %d callbacks in flight at once, want at most %d", n, waves, calls, calls)
	}
}
