package netsapiens_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// termOnlyUserListings makes the listings of user 1000's calls narrower
// than the notes infer ([inferred]: the sessions the user is a party to):
// only those where the user is the term party, the calls it was called
// on, not the ones it placed (a CallRequest's consult).
func termOnlyUserListings(_ *nssim.Sim, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/users/1000/calls" {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var rows []map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &rows) != nil {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		kept := []map[string]any{}
		for _, row := range rows {
			if fmt.Sprint(row["call-orig-user"]) != "1000" {
				kept = append(kept, row)
			}
		}
		var buf bytes.Buffer
		json.NewEncoder(&buf).Encode(kept)
		w.Header().Set("Content-Type", "application/json")
		w.Write(buf.Bytes())
	})
}

// On a PBX that ignores start, in a domain busier than a page, a consult
// past the domain's first page that the agent's own listing does not
// show either (a user's listing narrower than the notes infer: only the
// calls the user was called on) was never seen: every reading unknown,
// and the transfer could not complete. The consult is the agent's
// CallRequest, whose call-id is there to read the call back [doc]: read
// by it, the reading shows the consult.
func TestAConsultNoListingShowsOnACutListingIsReadByItsID(t *testing.T) {
	sim, srv := newSimServer(t, stuckPBX, termOnlyUserListings)
	placeOthers(t, sim, 4)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	c := newLocator(t, srv.URL)
	tr := transferOf("tr_01JNARROWLISTINGXXXXXXXXXX0", orig)
	located := *tr
	located.Legs = orchestrator.Legs{}
	if legs, err := c.Locate(t.Context(), &located); err != nil || legs.Caller.CallID != orig.OrigCallID {
		t.Fatalf("locate: %+v, %v; want the agent's call, from its own listing", legs, err)
	}
	tr.Sent.Dial = time.Now()
	dialConsult(t, sim, c, tr)
	obs, err := observer(t, c, tr)()
	if err != nil || obs.Consult == orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult shown", obs, err)
	}
}

// Both sides of the read by id that a cut listing falls back on for a
// consult never seen, behind a load balancer with an API node lagging
// behind (nssim's lagging node): its 404 within the visibility window of
// the dial is a consult it does not know yet, an unknown reading, not the
// consult gone (which would fail the transfer target_hung_up while the
// target talked to the agent), and not remembered: the consult is shown
// once the node catches up. A consult that really ended is gone past the
// window, as a listing read whole would show.
func TestAConsultReadByItsIDOnACutListingIsUnknownWithinTheWindow(t *testing.T) {
	const trID = "tr_01JNARROWLAGXXXXXXXXXXXXXX0"
	const window = 5 * time.Second
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	simCfg := stuckPBX
	simCfg.Now = clock.Now
	sim, srv := newSimServer(t, simCfg, termOnlyUserListings)
	placeOthers(t, sim, 4)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1,
		VisibilityWindow: window, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf(trID, orig)
	located := *tr
	located.Legs = orchestrator.Legs{}
	if _, err := c.Locate(t.Context(), &located); err != nil {
		t.Fatalf("locate: %v", err)
	}
	tr.Sent.Dial = clock.Now()
	dialConsult(t, sim, c, tr)
	observe := observer(t, c, tr)
	laggedThenEnded(t, clock, sim, observe, trID, window)
}
