package netsapiens_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A PBX that honours limit and ignores start, in a domain busier than
// the limit: a page of the limit answered again for a start past it was
// a listing cut short, every reading unknown but for what the agent's
// own listing showed. Asked once more with a limit above the domain's
// count, it answers every call: the listing is whole, and no user's
// listing is read, by the locate or by a reading. The other side of the
// guess: a PBX that ignores limit too, paging by the limit's size of its
// own, answers its page again to the larger limit, and the listing stays
// cut (the agent's listing read, as before); so does one that refuses the
// larger limit (400).
func TestAPBXThatHonoursLimitAndIgnoresStartIsReadWholeWithALargerLimit(t *testing.T) {
	// refusesLargerLimits answers 400 to a listing asking for more than two
	// rows: a PBX that refuses a limit above its cap.
	refusesLargerLimits := func(_ *nssim.Sim, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n, _ := strconv.Atoi(r.URL.Query().Get("limit")); n > 2 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"code":400,"message":"limit too large"}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name    string
		sim     nssim.Config
		wrap    func(*nssim.Sim, http.Handler) http.Handler
		byUsers bool
	}{
		{"limit honoured, start ignored", nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly}, nil, false},
		{"both ignored, pages of the limit's size", nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored}, nil, true},
		{"a larger limit refused", nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly}, refusesLargerLimits, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSimServer(t, tc.sim, tc.wrap)
			placeOthers(t, sim, 4)
			orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1, ListLimit: 2})
			if err != nil {
				t.Fatal(err)
			}
			const trID = "tr_01JLIMITONLYXXXXXXXXXXXXXX0"
			tr := transferOf(trID, orig)
			located := *tr
			located.Legs = orchestrator.Legs{}
			legs, err := c.Locate(context.Background(), &located)
			if err != nil || legs.Caller.CallID != orig.OrigCallID {
				t.Fatalf("locate: %+v, %v; want the agent's call past the first page", legs, err)
			}
			if n := userListings(sim); (n > 0) != tc.byUsers {
				t.Errorf("the locate read %d listings of a user's calls; want some: %v", n, tc.byUsers)
			}
			dialConsult(t, sim, c, tr)
			obs, err := observer(t, c, tr)()
			if err != nil || obs.Consult == orchestrator.ConsultAbsent || obs.Caller != orchestrator.CallerConnected {
				t.Fatalf("observation %+v, %v: want the caller with the agent (no hold sent) and the consult shown", obs, err)
			}
			if n := userListings(sim); (n > 0) != tc.byUsers {
				t.Errorf("%d listings of a user's calls read; want some: %v", n, tc.byUsers)
			}
			larger := 0
			for _, r := range sim.Requests() {
				q, _ := url.ParseQuery(r.Query)
				if n, _ := strconv.Atoi(q.Get("limit")); r.Operation == nssim.OpList && n > 2 {
					larger++
				}
			}
			if larger == 0 && tc.wrap == nil { // a refused request does not reach nssim
				t.Error("no listing asked with a limit above the one set")
			}
		})
	}
}
