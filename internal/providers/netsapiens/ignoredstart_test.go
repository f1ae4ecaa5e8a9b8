package netsapiens_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// stuckPBX is a PBX that pages its listings by three calls of its own and
// ignores limit and start: whatever is asked, a listing is its first three
// rows, the domain's and a user's alike.
var stuckPBX = nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsIgnored}

// userListings counts the listings of a user's calls nssim answered.
func userListings(sim *nssim.Sim) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpList && strings.Contains(r.Path, "/users/") {
			n++
		}
	}
	return n
}

// A PBX that ignores start and pages by a size of its own below the
// limit, in a domain busier than a page, with
// TRANSFERD_NETSAPIENS_LIST_LIMIT left at its default. No listing of the
// domain shows more than its first page, and no setting helped: the
// locate found the page short of the count, read on, was answered the
// same page again, and left the call unknown at every try (the transfer
// failed provider_unavailable, the caller untouched). Now the repeat
// tells the PBX ignores start, and the agent's own listing, which holds
// the agent's calls whole, is read: the call past the domain's first page
// is found, and so is the consult, which no reading of the domain showed
// (before the locate, the consult was never seen and the transfer could
// not complete). The transfer completes, verified.
//
// The other side: a PBX that honours start, with the same calls, is read
// on and never reads a user's listing.
func TestAPBXThatIgnoresStartIsReadByTheAgentsOwnListing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sim     nssim.Config
		byUsers bool
	}{
		{"start ignored, pages of its own", stuckPBX, true},
		{"start honoured, pages of its own", nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsStartOnly}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, tc.sim)
			placeOthers(t, h.sim, 4)
			h.placeCall(t) // after the others: past the first page
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			assertCompleted(t, tr)
			if n := userListings(h.sim); (n > 0) != tc.byUsers {
				t.Errorf("%d listings of a user's calls read; want some: %v", n, tc.byUsers)
			}
		})
	}
}

// The locate on a PBX that ignores start, both sides of what the agent's
// own listing shows: two calls of the agent's, one on the domain's first
// page and one past it, make the client name call_id (ErrSeveralCalls):
// before, unknown for ever. An agent whose own listing shows no call is
// still unknown, not call_not_found: that a user's listing shows every
// call of the user's is inferred, not documented, and the domain's
// listing could not be read whole. An agent's own listing that is itself
// a page answered again (more calls of the agent's than a page) is
// unknown too.
func TestALocateOnAPBXThatIgnoresStartReadsTheAgentsOwnListing(t *testing.T) {
	unknown := func(_ orchestrator.Legs, err error) bool {
		return orchestrator.KindOf(err) == orchestrator.KindProviderUnavailable
	}
	for _, tc := range []struct {
		name                  string
		before, others, after int // the agent's calls placed before the others, the others, the agent's after
		want                  func(legs orchestrator.Legs, err error) bool
		says                  string
	}{
		{"one call, past the first page", 0, 4, 1, func(legs orchestrator.Legs, err error) bool {
			return err == nil && legs.Caller.CallID != ""
		}, "the agent's call"},
		{"two calls, one past the first page", 1, 3, 1, func(_ orchestrator.Legs, err error) bool {
			return errors.Is(err, orchestrator.ErrSeveralCalls)
		}, "ErrSeveralCalls"},
		{"no call", 0, 5, 0, unknown, "unknown"},
		{"more calls than a page", 0, 3, 4, unknown, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSimServer(t, stuckPBX, nil)
			n := 0
			place := func(k int) {
				for ; k > 0; k-- {
					n++
					if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000",
						From: fmt.Sprintf("155555556%02d", n), To: "11111111111"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			place(tc.before)
			placeOthers(t, sim, tc.others)
			place(tc.after)
			c := newLocator(t, srv.URL)
			tr := &orchestrator.Transfer{ID: "tr_01JASTARTIGNOREDLOCATEXXX0", Request: orchestrator.Request{Provider: netsapiens.Name,
				Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
			legs, err := c.Locate(context.Background(), tr)
			if !tc.want(legs, err) {
				t.Fatalf("locate: legs %+v, %v (kind %v); want %s", legs, err, orchestrator.KindOf(err), tc.says)
			}
		})
	}
}

// The agent's own listing adds to what the domain's first page shows of
// the agent's calls; it does not stand for it. On a PBX that ignores
// start, the agent with a call on the domain's first page and one past
// it, and a user's listing that does not show the first (an API node
// lagging behind the one that answered the domain's page, or a listing
// narrower than the notes infer: [inferred]), the locate took the one call
// the user's listing showed for the agent's only call, dropping the one
// the domain had shown: it moved that call where the client, naming no
// call_id, was to be asked which (ErrSeveralCalls).
func TestALocateKeepsTheAgentsCallsTheDomainShowedBesideItsOwnListing(t *testing.T) {
	var hidden atomic.Value // the session the user's listing leaves out
	hidden.Store("")
	sim, srv := newSimServer(t, stuckPBX, func(_ *nssim.Sim, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/users/1000/calls") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var rows []map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &rows); err != nil {
				t.Errorf("a user's listing that is no array: %v", err)
				return
			}
			kept := rows[:0]
			for _, row := range rows {
				if row["call-session-id"] != hidden.Load() {
					kept = append(kept, row)
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(kept)
		})
	})
	first, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555601", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	hidden.Store(first.SessionID)
	placeOthers(t, sim, 3)
	if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555602", To: "11111111111"}); err != nil {
		t.Fatal(err)
	}
	c := newLocator(t, srv.URL)
	tr := &orchestrator.Transfer{ID: "tr_01JASTARTIGNOREDMERGEXXXX0", Request: orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
	legs, err := c.Locate(context.Background(), tr)
	if !errors.Is(err, orchestrator.ErrSeveralCalls) {
		t.Fatalf("locate: legs %+v, %v (kind %v); want ErrSeveralCalls", legs, err, orchestrator.KindOf(err))
	}
	if userListings(sim) == 0 {
		t.Error("no user's listing read: the case was not played")
	}
}
