package netsapiens_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
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
//
// A PBX that ignores start and answers its first page again is whole when
// the domain's count is no more than what the listing shows. Counted
// against every row read, a call of the first page that ended meanwhile
// still counted, and stood for a call never read: the count is held
// against the page answered last, read after it.
func TestARowShiftedBackBetweenPagesIsNotSkipped(t *testing.T) {
	for name, cfg := range map[string]struct {
		sim    nssim.Config
		others int
	}{
		"limit and start honoured":            {nssim.Config{ListPageSize: 2}, 2},
		"start ignored, its first page again": {nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored}, 3},
	} {
		t.Run(name, func(t *testing.T) { rowShiftedBack(t, cfg.sim, cfg.others) })
	}
}

func rowShiftedBack(t *testing.T, simCfg nssim.Config, others int) {
	const trID = "tr_01JSHIFTEDBACKXXXXXXXXXXXX0"
	const window = 5 * time.Second
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	var (
		mu     sync.Mutex
		onPage func()
	)
	simCfg.Now, simCfg.JoinKeeps = clock.Now, nssim.JoinKeepsConsult
	sim, srv := newSimServer(t, simCfg,
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
	// Calls of other users first: the caller's, and the consult's session
	// that carries it after the join, come after the first page.
	var first nssim.ActiveCall
	for i := 0; i < others; i++ {
		ac, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: fmt.Sprintf("200%d", i),
			From: fmt.Sprintf("1555555000%d", i), To: "11111111111"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = ac
		}
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
	leg, err := c.Dial(context.Background(), tr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	// The consult's session as the dial's answer and a first listing
	// would give it (a PBX that ignores start lists it on no page). Read
	// once the simulator has made it: read before, it was missing now and
	// then, and the join had to find the consult in a listing that PBX
	// cannot give whole.
	for _, ss := range sim.Truth().Sessions {
		if ss.ByCallID == netsapiens.ConsultCallID(trID) || ss.Orig.CallID == netsapiens.ConsultCallID(trID) {
			leg.SessionID, leg.Server = ss.SessionID, ss.CoreServer
		}
	}
	if leg.SessionID == "" {
		t.Fatal("the simulator shows no session of the consult")
	}
	tr.Legs.Consult = leg
	tr.Answered = true
	if err := c.Complete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
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
	// Whole, the listing shows the joined call and nothing is ended; cut,
	// the hang-up is unknown, sent again later.
	if err := c.HangupConsult(context.Background(), tr); err != nil && orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
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

// In a busy domain calls end all the time, and a page shifted back is the
// rule, not the exception: here a call ends before every other page asked
// past the first. Read again from the first page at every shift, the
// listing never reached its end within the pages allowed, and every
// reading of the domain was unknown (the agent's call never located).
// Asked again from a row or a few further back, it is read whole.
func TestABusyDomainIsReadWholeThoughRowsShiftBack(t *testing.T) {
	var (
		mu    sync.Mutex
		asked int
		ends  []string
	)
	sim, srv := newSimServer(t, nssim.Config{ListPageSize: 4},
		func(sim *nssim.Sim, next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/calls") && r.URL.Query().Get("start") != "" {
					mu.Lock()
					asked++
					var end string
					if asked%2 == 1 && len(ends) > 0 {
						end, ends = ends[0], ends[1:]
					}
					mu.Unlock()
					if end != "" {
						if err := sim.Hangup(end, "orig"); err != nil {
							t.Error(err)
						}
					}
				}
				next.ServeHTTP(w, r)
			})
		})
	for i := 0; i < 12; i++ {
		ac, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: fmt.Sprintf("20%02d", i),
			From: fmt.Sprintf("155555500%02d", i), To: "11111111111"})
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, ac.SessionID)
	}
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1,
		ListLimit: 4, ListPages: 12})
	if err != nil {
		t.Fatal(err)
	}
	tr := &orchestrator.Transfer{ID: "tr_01JBUSYDOMAINXXXXXXXXXXXXX0", Request: orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
	legs, err := c.Locate(context.Background(), tr)
	if err != nil {
		t.Fatalf("locate in a busy domain: %v", err)
	}
	if legs.Caller.CallID != orig.OrigCallID {
		t.Fatalf("located caller %+v, want %s", legs.Caller, orig.OrigCallID)
	}
	if mu.Lock(); len(ends) == 12 {
		t.Error("no call ended while the listing was read")
	}
	mu.Unlock()
}
