package netsapiens_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A listing is read page by page, each asking for the rows from where the
// last ended. A call on an earlier page that ends between two page
// requests moves every row after it one back: the row that was first on
// the next page is then last on the page already read, and neither
// request returns it. The listing, its last page short, looked whole, and
// the call skipped was not listed. After a join that kept the consult's
// session (JoinKeeps consult), the hang-up so found no session with our
// call-id and disconnected by it: the caller's call with the target,
// the completed join undone. A listing whose next page does not begin
// with a row already read may have skipped one, and is read again.
func TestARowShiftedBackBetweenPagesIsNotSkipped(t *testing.T) {
	const trID = "tr_01JSHIFTEDBACKXXXXXXXXXXXX0"
	const window = 5 * time.Second
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	var (
		mu     sync.Mutex
		onPage func()
	)
	sim, srv := newSimServer(t, nssim.Config{Now: clock.Now, JoinKeeps: nssim.JoinKeepsConsult, ListPageSize: 2},
		func(sim *nssim.Sim, next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/calls") && r.URL.Query().Get("start") != "" {
					mu.Lock()
					f := onPage
					onPage = nil
					mu.Unlock()
					if f != nil {
						f()
					}
				}
				next.ServeHTTP(w, r)
			})
		})
	// Two calls of other users first: the caller's, and the consult's
	// session that carries it after the join, come on the second page.
	first, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "2000", From: "15555550000", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "2001", From: "15555550001", To: "11111111111"}); err != nil {
		t.Fatal(err)
	}
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1,
		VisibilityWindow: window, ListLimit: 2, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf(trID, orig)
	tr.Sent.Dial = clock.Now()
	dialConsult(t, sim, c, tr)
	tr.Answered = true
	if err := c.Complete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Sent.Join = clock.Now()
	clock.advance(2 * window) // past the window: not listed is gone

	// The first call ends between the first page and the second.
	mu.Lock()
	onPage = func() {
		if err := sim.Hangup(first.SessionID, "orig"); err != nil {
			t.Error(err)
		}
	}
	mu.Unlock()
	if err := c.HangupConsult(context.Background(), tr); err != nil {
		t.Fatalf("hang-up after the join: %v", err)
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpDisconnect || r.Operation == nssim.OpReject {
			t.Errorf("%s %s sent, which ends the caller's call with the target", r.Method, r.Path)
		}
	}
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	up := false
	for _, s := range sim.Truth().Sessions {
		up = up || s.Orig.CallID == orig.OrigCallID || s.Term.CallID == orig.OrigCallID
	}
	if !up {
		t.Fatalf("the caller's call ended: %+v", sim.Truth().Ended)
	}
}
