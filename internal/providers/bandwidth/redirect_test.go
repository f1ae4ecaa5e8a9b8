package bandwidth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
)

// Catapult (or a proxy in front of it) that redirects, as one serving
// https redirects a base URL written with http://: Go's client follows a
// 301, 302 or 303 to a POST or DELETE with a GET, so a bridge's update, a
// call's transfer or a hang-up became a read of another URL, and its 200
// was taken for the command accepted (the NetSapiens review of the
// fiftieth pass found it there; both adapters share the transport). Such
// a redirect is answered as it came: the command was not done. A GET is
// still followed.
func TestACommandRedirectedIsNotTurnedIntoARead(t *testing.T) {
	var followed, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/command/"):
			followed.Add(1) // a command's redirect followed, whatever its method
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		case strings.HasPrefix(r.URL.Path, "/moved/"):
			gets.Add(1)
			w.Header().Set("Content-Type", "application/json")
			if strings.HasSuffix(r.URL.Path, "/calls") {
				w.Write([]byte(`[]`))
			} else {
				w.Write([]byte(`{"id":"c-a","state":"active"}`))
			}
		case r.Method == http.MethodGet:
			http.Redirect(w, r, "/moved"+r.URL.Path, http.StatusMovedPermanently)
		default:
			http.Redirect(w, r, "/command"+r.URL.Path, http.StatusMovedPermanently)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := bandwidth.New(bandwidth.Config{BaseURL: srv.URL, UserID: userID, APIToken: apiToken, APISecret: apiSecret,
		PublicURL: "https://transferd.example.com", RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	attended := &orchestrator.Transfer{ID: orchestrator.NewID(time.Now()), Request: orchestrator.Request{Provider: bandwidth.Name,
		Mode: orchestrator.ModeAttended, Call: orchestrator.CallRef{CallID: "c-a", AgentCallID: "c-g"}, Target: target},
		Legs: orchestrator.Legs{Caller: orchestrator.LegRef{CallID: "c-a", BridgeID: "brg-1"},
			Agent: orchestrator.LegRef{CallID: "c-g", BridgeID: "brg-2"}, Consult: orchestrator.LegRef{CallID: "c-b", BridgeID: "brg-2"}}}
	announced := &orchestrator.Transfer{ID: orchestrator.NewID(time.Now()), Request: orchestrator.Request{Provider: bandwidth.Name,
		Mode: orchestrator.ModeAnnounced, Call: orchestrator.CallRef{CallID: "c-a"}, Target: target},
		Legs: orchestrator.Legs{Caller: orchestrator.LegRef{CallID: "c-a"}}}
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"attended hold":     func() error { return c.Hold(ctx, attended) },
		"attended unhold":   func() error { return c.Unhold(ctx, attended) },
		"attended dial":     func() error { _, err := c.Dial(ctx, attended); return err },
		"attended complete": func() error { return c.Complete(ctx, attended) },
		"attended hang up":  func() error { return c.HangupConsult(ctx, attended) },
		"announced dial":    func() error { _, err := c.Dial(ctx, announced); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s redirected: no error; want the 301 taken for not done", name)
		}
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("%d commands were followed as reads", n)
	}
	gets.Store(0)
	if err := c.CheckCredentials(ctx); err != nil || gets.Load() == 0 {
		t.Errorf("a read redirected: %v, %d reads followed; a GET is followed", err, gets.Load())
	}
}
