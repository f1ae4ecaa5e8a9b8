package netsapiens_test

import (
	"context"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A PBX that honours limit and ignores start, in a domain busier than
// the limit: a listing asked for more rows than counted is read whole
// (TestAPBXThatHonoursLimitAndIgnoresStartIsReadWholeWithALargerLimit),
// but that success was not remembered, and every listing paid the page
// answered again and a page read after the count first: five requests a
// listing of the domain. Remembered for the account's PBX, a first page
// of the limit goes to the count and the larger limit at once: three. A
// PBX that stops answering the larger limit whole (here, one that comes
// to ignore limit too) makes the client forget it and page as before
// (the listing cut, the agent's own listing read), and one that honours
// it again is learned again.
//
// Measured here: a transfer's four listings of the domain (its locate and
// three readings) took 20 requests before, 12 remembered.
func TestAPBXHonouringALargerLimitIsRemembered(t *testing.T) {
	sim, srv := newSimServer(t, nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly}, nil)
	placeOthers(t, sim, 4)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1, ListLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	// listings counts the requests of the domain's listings and counts
	// since the last call, and the listings of a user's calls.
	listings := func() (domainReqs, userReqs int) {
		for _, r := range sim.Requests() {
			switch {
			case r.Operation != nssim.OpList && r.Operation != nssim.OpCount:
			case r.Path == "/domains/"+domain+"/calls" || r.Path == "/domains/"+domain+"/calls/count":
				domainReqs++
			default:
				userReqs++
			}
		}
		sim.ResetRequests()
		return domainReqs, userReqs
	}
	// transfer locates, dials and reads trID's transfer three times (four
	// listings of the domain), checking each reading, and hangs its
	// consult up.
	transfer := func(trID string) *orchestrator.Transfer {
		t.Helper()
		tr := transferOf(trID, orig)
		located := *tr
		located.Legs = orchestrator.Legs{}
		if legs, err := c.Locate(context.Background(), &located); err != nil || legs.Caller.CallID != orig.OrigCallID {
			t.Fatalf("locate: %+v, %v; want the agent's call past the first page", legs, err)
		}
		dialConsult(t, sim, c, tr)
		for range 3 {
			obs, err := observer(t, c, tr)()
			if err != nil || obs.Consult == orchestrator.ConsultAbsent || obs.Caller != orchestrator.CallerConnected {
				t.Fatalf("observation %+v, %v: want the caller with the agent and the consult shown", obs, err)
			}
		}
		return tr
	}
	hangup := func(tr *orchestrator.Transfer) {
		t.Helper()
		for _, ss := range sim.Truth().Sessions {
			if ss.ByCallID == netsapiens.ConsultCallID(tr.ID) {
				if err := sim.Hangup(ss.SessionID, "orig"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXXXX1")) // learns it at its locate
	listings()
	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXXXX2"))
	domainReqs, userReqs := listings()
	t.Logf("a transfer's four listings of the domain: %d requests", domainReqs)
	if domainReqs > 4*3 || userReqs != 0 {
		t.Errorf("a transfer's four listings took %d requests of the domain and %d of a user's; want at most 3 a listing (5 before it was remembered), none of a user's", domainReqs, userReqs)
	}

	// The PBX changes: it ignores limit too, paging by two. The listing is
	// cut, the agent's own listing read.
	g := sim.Guesses()
	g.ListParams = nssim.ListParamsIgnored
	if err := sim.SetGuesses(g); err != nil {
		t.Fatal(err)
	}
	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXXXX3"))
	if _, userReqs := listings(); userReqs == 0 {
		t.Error("no user's listing read once the PBX ignored limit: want the listing taken for cut")
	}
	// Forgotten at once: no listing asks the count and the larger limit
	// after its first page as well as after the page answered again.
	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXX3B"))
	if domainReqs, _ := listings(); domainReqs > 4*5 {
		t.Errorf("once the PBX ignored limit, a transfer's four listings took %d requests of the domain; want 5 a listing, as before it was learned", domainReqs)
	}
	// Forgotten: a listing pages again, one answered again, and the larger
	// limit tried once more, which a PBX honouring it again answers whole.
	g.ListParams = nssim.ListParamsLimitOnly
	if err := sim.SetGuesses(g); err != nil {
		t.Fatal(err)
	}
	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXXXX4"))
	listings()
	hangup(transfer("tr_01JLIMITREMEMBEREDXXXXXXX5"))
	if domainReqs, userReqs := listings(); domainReqs > 4*3 || userReqs != 0 {
		t.Errorf("learned again, a transfer's four listings took %d requests of the domain and %d of a user's; want at most 3 a listing", domainReqs, userReqs)
	}
}
