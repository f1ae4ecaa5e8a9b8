package netsapiens_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// newestFirst wraps nssim (honouring limit, ignoring start) as a PBX that
// lists a domain's calls newest first: which calls a limit leaves out is
// not documented, and nssim lists the oldest first. Before the first
// listing asking for more than two rows once armed, it runs place.
func newestFirst(armed *atomic.Bool, place func(*nssim.Sim)) func(*nssim.Sim, http.Handler) http.Handler {
	return func(sim *nssim.Sim, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/calls") || strings.Contains(r.URL.Path, "/users/") {
				h.ServeHTTP(w, r)
				return
			}
			q := r.URL.Query()
			limit, _ := strconv.Atoi(q.Get("limit"))
			if limit > 2 && armed.CompareAndSwap(true, false) {
				place(sim)
			}
			q.Set("limit", "100000") // every row, oldest first
			all := r.Clone(r.Context())
			all.URL.RawQuery = q.Encode()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, all)
			var rows []json.RawMessage
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &rows) != nil {
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
				return
			}
			slices.Reverse(rows)
			if limit > 0 && len(rows) > limit {
				rows = rows[:limit]
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rows)
		})
	}
}

// The domain's listing asked for more rows than counted (listAll) is
// answered as many rows as asked, calls having started since the count:
// the listing may go on past them, and is not whole. Taken for whole (a
// page of the limit's size counted as a short one), on a PBX that lists
// the newest calls first the agent's call and the consult, older than
// those that started, were left out of a listing read as the domain's
// every call, the consult taken for absent. It stays cut, and the calls
// it does not show are read as a cut listing's are (the sixty-sixth
// pass's mutation N1 found this side untested).
func TestAListingOfAsManyRowsAsAskedAboveTheCountIsNotWhole(t *testing.T) {
	var armed atomic.Bool
	sim, srv := newSimServer(t, nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly},
		newestFirst(&armed, func(sim *nssim.Sim) { placeOthers(t, sim, 40) }))
	placeOthers(t, sim, 4)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1, ListLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf("tr_01JFULLLIMITXXXXXXXXXXXXXX0", orig)
	dialConsult(t, sim, c, tr)
	armed.Store(true)
	obs, err := observer(t, c, tr)()
	if armed.Load() {
		t.Fatal("no listing asked for more rows than counted")
	}
	if err != nil || obs.Consult == orchestrator.ConsultAbsent || obs.Caller != orchestrator.CallerConnected {
		t.Errorf("observation %+v, %v: want the caller with the agent (no hold sent) and the consult shown", obs, err)
	}
}

// The other side of TestAPBXThatHonoursLimitAndIgnoresStartIsReadWholeWithALargerLimit:
// a PBX that pages by a size of its own below the limit answers a page
// shorter than asked, and ignores limit; asked for more rows than counted,
// it answers the same page again. It is not asked (listAll), at no
// reading: one listing more at every reading of a busy domain, for a page
// that cannot be whole (the sixty-sixth pass's mutation N2 found this
// side untested).
func TestAPBXPagingBelowTheLimitIsNotAskedForMoreRowsThanCounted(t *testing.T) {
	sim, srv := newSimServer(t, stuckPBX, nil)
	placeOthers(t, sim, 4)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	const listLimit = 10
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1, ListLimit: listLimit})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf("tr_01JPAGEDBELOWXXXXXXXXXXXX0", orig)
	located := *tr
	located.Legs = orchestrator.Legs{}
	if legs, err := c.Locate(t.Context(), &located); err != nil || legs.Caller.CallID != orig.OrigCallID {
		t.Fatalf("locate: %+v, %v; want the agent's call past the first page", legs, err)
	}
	dialConsult(t, sim, c, tr)
	if obs, err := observer(t, c, tr)(); err != nil || obs.Consult == orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult shown", obs, err)
	}
	for _, r := range sim.Requests() {
		q, _ := url.ParseQuery(r.Query)
		if n, _ := strconv.Atoi(q.Get("limit")); r.Operation == nssim.OpList && n > listLimit {
			t.Errorf("a listing asked for %d rows, above the limit of %d, of a PBX whose pages are shorter: %s?%s",
				n, listLimit, r.Path, r.Query)
		}
	}
}
