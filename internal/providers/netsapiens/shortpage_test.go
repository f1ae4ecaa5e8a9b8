package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// newLocator is an adapter against sim (served by srv) with the default
// list limit, one attempt per request.
func newLocator(t *testing.T, srvURL string) *netsapiens.Client {
	t.Helper()
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srvURL + basePath, APIKey: apiKey, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countsOf counts the domain counts nssim answered.
func countsOf(sim *nssim.Sim) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpCount {
			n++
		}
	}
	return n
}

// The agent has two calls, and the request names neither (no call_id):
// the locate must refuse to choose. The first is on the listing's first
// page, the second past it, on a PBX that pages by a size of its own
// below the limit transferd asks for. The first page is short of that
// limit, which looks like the end of the listing; the locate found one
// call of the agent's there and took it, without asking whether the
// domain holds more than the page showed: the transfer held, and handed
// to the target, a call the client had not chosen. Now a locate that
// finds one call with no call_id on a short page asks the domain's count,
// as a locate that finds none does; a count above the page makes it read
// on as if the page were full (a PBX that honours start), which shows the
// second call, or leaves the listing unknown (one that does not).
//
// Both sides of each paging guess nssim offers: a PBX that honours limit
// (one short page is the whole listing) and one that answers every call
// whatever is asked find both calls without the count.
func TestALocateWithoutACallIDLooksPastAShortPageForASecondCall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sim     nssim.Config
		unknown bool // the listing cannot be read whole: unknown, not a choice
	}{
		{"start honoured, pages of its own", nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsStartOnly}, false},
		// Since the sixty-fourth pass, read from the agent's own listing.
		{"neither honoured, pages of its own", nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsIgnored}, false},
		{"limit and start honoured", nssim.Config{}, false},
		{"neither honoured, every call", nssim.Config{ListParams: nssim.ListParamsIgnored}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSimServer(t, tc.sim, nil)
			if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"}); err != nil {
				t.Fatal(err)
			}
			placeOthers(t, sim, 3)
			if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555556", To: "11111111111"}); err != nil {
				t.Fatal(err)
			}
			c := newLocator(t, srv.URL)
			tr := &orchestrator.Transfer{ID: "tr_01JASHORTPAGESECONDCALLXX0", Request: orchestrator.Request{Provider: netsapiens.Name,
				Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
			legs, err := c.Locate(context.Background(), tr)
			switch {
			case tc.unknown && orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable:
				t.Fatalf("locate: legs %+v, %v (kind %v); want unknown (provider unavailable): a second call may be on a page not read",
					legs, err, orchestrator.KindOf(err))
			case !tc.unknown && !errors.Is(err, orchestrator.ErrSeveralCalls):
				t.Fatalf("locate: legs %+v, %v; want the agent's two calls found (name one with call_id)", legs, err)
			}
		})
	}
}

// The other side: the agent has one call, on the first page, and the
// domain's other calls run past it. Read on, the listing shows no second
// call of the agent's, and the one found is located, not left unknown for
// ever (where start is honoured). Where the domain's count agrees with a
// short page, that page is the listing, and the call is located too.
func TestALocateWithoutACallIDOnAShortPageFindsTheOneCall(t *testing.T) {
	for name, cfg := range map[string]nssim.Config{
		"start honoured, pages of its own": {ListPageSize: 3, ListParams: nssim.ListParamsStartOnly},
		"limit and start honoured":         {},
	} {
		t.Run(name, func(t *testing.T) {
			sim, srv := newSimServer(t, cfg, nil)
			orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
			if err != nil {
				t.Fatal(err)
			}
			placeOthers(t, sim, 4)
			c := newLocator(t, srv.URL)
			tr := &orchestrator.Transfer{ID: "tr_01JASHORTPAGEONECALLXXXXX0", Request: orchestrator.Request{Provider: netsapiens.Name,
				Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
			legs, err := c.Locate(context.Background(), tr)
			if err != nil || legs.Caller.CallID != orig.OrigCallID {
				t.Fatalf("locate: legs %+v, %v; want the agent's one call", legs, err)
			}
			if countsOf(sim) == 0 {
				t.Error("a short page taken for the whole listing without the domain's count")
			}
			for _, r := range sim.Requests() {
				if r.Method != http.MethodGet {
					t.Errorf("a locate sent %s %s", r.Method, r.Path)
				}
			}
		})
	}
}

// opsSince counts the requests nssim answered from the from-th on: all
// of them, and the domain counts among them.
func opsSince(sim *nssim.Sim, from int) (all, counts int) {
	reqs := sim.Requests()
	for _, r := range reqs[from:] {
		all++
		if r.Operation == nssim.OpCount {
			counts++
		}
	}
	return all, counts
}

// What the count of item one costs the common way of asking, a transfer
// naming no call_id, on a PBX that honours limit (whose one short page is
// its whole listing): the first transfer of a process reads the count
// once, since its locate's page is the longest the PBX has answered yet.
// Its readings then show a longer page (the caller's call and the
// consult), which proves the PBX pages by at least that: the next
// transfer's locate, on a page shorter than that, asks nothing more than
// before the count was asked.
func TestALocateWithoutACallIDCountsOnlyOnAPageAsLongAsAnySeen(t *testing.T) {
	h := setup(t, nssim.Config{})
	var perTransfer []int
	for i := 0; i < 3; i++ {
		from := len(h.sim.Requests())
		orig := h.placeCall(t)
		tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
		assertCompleted(t, tr)
		all, counts := opsSince(h.sim, from)
		perTransfer = append(perTransfer, all)
		if want := 0; i == 0 {
			if counts != 1 {
				t.Errorf("transfer %d read the domain's count %d times, want once (its page the longest seen)", i, counts)
			}
		} else if counts != want {
			t.Errorf("transfer %d read the domain's count %d times, want %d (its page shorter than one the PBX answered)", i, counts, want)
		}
		if err := h.sim.Hangup(orig.SessionID, "orig"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("requests per transfer: %v", perTransfer)
}

// A PBX that pages by a size of its own below the limit transferd asks
// for, and honours start (nssim's start_only), with the agent's call past
// its first page and TRANSFERD_NETSAPIENS_LIST_LIMIT left at its default.
// The sixtieth pass made such a call unknown (provider_unavailable once
// the step's patience was spent, the caller untouched): the setting was
// the only remedy. The locate's count shows more calls than the short
// page, the listing is read on as if that page were full, the call is
// found, and the page size is learned: every listing after reads on from
// pages of that size, so the next transfer completes without reading the
// count at all. Both sides of the guess: a PBX that honours limit, with
// the same calls, answers them on one page, and nothing is learned (its
// transfers read no listing past a first page).
func TestAPageSizeOfThePBXsOwnIsLearned(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sim   nssim.Config
		paged bool
	}{
		{"start honoured, pages of its own", nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsStartOnly}, true},
		{"limit and start honoured", nssim.Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, tc.sim)
			placeOthers(t, h.sim, 4)
			for i := 0; i < 2; i++ {
				from := len(h.sim.Requests())
				orig := h.placeCall(t) // after the others: past the first page
				tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
				assertCompleted(t, tr)
				_, counts := opsSince(h.sim, from)
				if i == 1 && counts != 0 {
					t.Errorf("the second transfer read the domain's count %d times, want none", counts)
				}
				if err := h.sim.Hangup(orig.SessionID, "orig"); err != nil {
					t.Fatal(err)
				}
			}
			if _, paged := listings(h.sim); (paged > 0) != tc.paged {
				t.Errorf("%d listings read on past a first page; want some: %v", paged, tc.paged)
			}
		})
	}
}
