package netsapiens_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
)

// A PBX (or a proxy in front of it) that redirects, as one serving
// https redirects a base URL written with http://: Go's client follows a
// 301, 302 or 303 to a PATCH, POST or DELETE with a GET, so a hold, a
// dial, an unhold or a hang-up became a read of another URL, and its 200
// was taken for the command accepted (found by review, fiftieth pass).
// Such a redirect is now answered as it came: the command was not done.
// A GET is still followed.
func TestACommandRedirectedIsNotTurnedIntoARead(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/moved/"):
			if r.Method == http.MethodGet {
				gets.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`[]`))
		default:
			http.Redirect(w, r, "/moved"+r.URL.Path, http.StatusMovedPermanently)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(time.Now()), Request: orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"},
		Legs: orchestrator.Legs{Agent: orchestrator.LegRef{CallID: "agent-leg"}}}
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"hold":    func() error { return c.Hold(ctx, tr) },
		"unhold":  func() error { return c.Unhold(ctx, tr) },
		"dial":    func() error { _, err := c.Dial(ctx, tr); return err },
		"hang up": func() error { return c.HangupConsult(ctx, tr) },
	} {
		err := f()
		ev := orchestrator.EvidenceOf(err)
		if err == nil || ev == nil || ev.Status != http.StatusMovedPermanently {
			t.Errorf("%s redirected: error %v, evidence %+v; want the 301 as the answer", name, err, ev)
		}
	}
	if n := gets.Load(); n != 0 {
		t.Errorf("%d commands were followed as reads", n)
	}
	if _, err := c.Read(ctx, "test", []*orchestrator.Transfer{tr}); err != nil {
		t.Errorf("a listing redirected: %v; a GET is followed", err)
	}
}
