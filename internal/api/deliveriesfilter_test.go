package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDeliveriesListRefusesAMalformedTransferID: the contract types
// ?transfer_id= of GET /v1/webhook-deliveries as a TransferID (as
// GET /v1/events does, which refuses a malformed one); an integrator's
// typo must be a 400 validation-error, not an empty page that reads as
// "no failed deliveries for this transfer".
func TestDeliveriesListRefusesAMalformedTransferID(t *testing.T) {
	e := newEventsEnv(t)
	res := e.req(t, "GET", "/v1/webhook-deliveries?transfer_id=tr_not-a-transfer-id", readKey, "")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "transfer_id") {
		t.Fatalf("a malformed transfer_id answered %d, want 400 validation-error naming transfer_id:\n%s", res.StatusCode, body)
	}
}

// A parameter given twice, of which only the first would count, is
// refused rather than half ignored.
func TestDeliveriesListRefusesARepeatedParameter(t *testing.T) {
	e := newEventsEnv(t)
	res := e.req(t, "GET", "/v1/webhook-deliveries?limit=5&limit=500", readKey, "")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "more than once") {
		t.Fatalf("limit given twice answered %d, want 400 validation-error naming limit:\n%s", res.StatusCode, body)
	}
}

// A ?cursor= of GET /v1/webhook-deliveries names one of the tenant's
// deliveries. It was looked up across tenants: with another tenant's key,
// the default tenant's newest delivery as the cursor listed that tenant's
// own deliveries, and a cursor naming no delivery listed none, which told
// whether the default tenant's delivery existed. Both are now the same
// 400 naming cursor; the tenant's own cursor still pages on.
func TestDeliveriesCursorOfAnotherTenantIsRefused(t *testing.T) {
	e := newEventsEnvFor(t, "default", otherTenant)
	e.start(t, otherWriteKey, "1005")
	e.start(t, writeKey, "1006")
	if err := e.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Items      []deliveryBody
		NextCursor string `json:"next_cursor"`
	}
	mine := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries", readKey, ""), http.StatusOK)
	if len(mine.Items) == 0 {
		t.Fatal("the default tenant has no failed deliveries")
	}
	var bodies []string
	for what, cursor := range map[string]string{
		"the default tenant's newest delivery": mine.Items[0].ID,
		"no delivery":                          "dlv_000000000000000000000000",
	} {
		res := e.req(t, "GET", "/v1/webhook-deliveries?cursor="+cursor, otherReadKey, "")
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var p struct{ Errors []struct{ Field string } }
		_ = json.Unmarshal(body, &p)
		if res.StatusCode != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "cursor" {
			t.Errorf("another tenant's list after %s answered %d, want 400 validation-error naming cursor:\n%s", what, res.StatusCode, body)
		}
		bodies = append(bodies, string(body))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("another tenant's delivery and none as the cursor are told apart:\n%s\n%s", bodies[0], bodies[1])
	}

	first := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=1", otherReadKey, ""), http.StatusOK)
	if first.NextCursor == "" {
		t.Fatalf("the other tenant's first page of one: %+v, want a next_cursor", first)
	}
	next := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=1&cursor="+first.NextCursor, otherReadKey, ""), http.StatusOK)
	if len(next.Items) != 1 || next.Items[0].ID == first.Items[0].ID {
		t.Errorf("the page after the tenant's own cursor: %+v, want the next delivery", next.Items)
	}
}

// A page's next_cursor holds where its last delivery stood, sealed for
// the tenant: the list goes on from there once that delivery is purged,
// where a cursor of its id alone named nothing any more and answered 400,
// so that a client paging through its history near the retention's edge
// had to start over. Another tenant's cursor, or one changed by a letter,
// is a 400 naming cursor; a delivery id, the cursor of the releases
// before, still pages on while its delivery is kept.
func TestDeliveriesCursorOutlivesItsDelivery(t *testing.T) {
	e := newEventsEnvFor(t, "default", otherTenant)
	e.start(t, writeKey, "1007")
	e.start(t, writeKey, "1008")
	e.start(t, otherWriteKey, "1009")
	if err := e.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Items      []deliveryBody
		NextCursor string `json:"next_cursor"`
	}
	idsOf := func(p page) (ids []string) {
		for _, d := range p.Items {
			ids = append(ids, d.ID)
		}
		return ids
	}
	list := func(key, query string, status int) page {
		t.Helper()
		return decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=200"+query, key, ""), status)
	}
	all := idsOf(list(readKey, "", http.StatusOK))
	if len(all) < 2 {
		t.Fatalf("%d failed deliveries, want several", len(all))
	}
	first := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=1", readKey, ""), http.StatusOK)
	cursor := first.NextCursor
	if !strings.HasPrefix(cursor, "dlc_") || len(first.Items) != 1 || first.Items[0].ID != all[0] {
		t.Fatalf("first page %+v; want the newest delivery and a cursor", first)
	}
	if got := idsOf(list(readKey, "&cursor="+cursor, http.StatusOK)); !slices.Equal(got, all[1:]) {
		t.Errorf("after the cursor: %v, want %v", got, all[1:])
	}
	if got := idsOf(list(readKey, "&cursor="+all[0], http.StatusOK)); !slices.Equal(got, all[1:]) {
		t.Errorf("after the delivery id as cursor: %v, want %v", got, all[1:])
	}
	changed := []byte(cursor)
	// A letter of the sealed position, changed to another of base64url's
	// (a bit flipped could make a character a query string refuses).
	if changed[5] = 'A'; cursor[5] == 'A' {
		changed[5] = 'B'
	}
	for what, c := range map[string]struct{ key, cursor string }{
		"another tenant":      {otherReadKey, cursor},
		"a letter changed":    {readKey, string(changed)},
		"a plain position":    {readKey, "dlc_12." + all[0]},
		"no delivery id":      {readKey, strings.Split(cursor, ".")[0]},
		"another kind of id":  {readKey, strings.Split(cursor, ".")[0] + ".tr_01M7Z72N5VG7KYHRJXJG7DJ13N"},
		"not a cursor at all": {readKey, "tr_01M7Z72N5VG7KYHRJXJG7DJ13N"},
	} {
		res := e.req(t, "GET", "/v1/webhook-deliveries?cursor="+c.cursor, c.key, "")
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"cursor"`) {
			t.Errorf("a cursor with %s answered %d, want 400 naming cursor:\n%s", what, res.StatusCode, body)
		}
	}

	// Every delivery purged: the list after the cursor is what is left
	// after it, none; the delivery id names nothing any more.
	if n, err := e.dels.PurgeDeliveries(context.Background(), time.Now().Add(time.Hour), 0); err != nil || n < len(all) {
		t.Fatalf("purged %d deliveries (%v), want every one of %d", n, err, len(all))
	}
	if got := list(readKey, "&cursor="+cursor, http.StatusOK); len(got.Items) != 0 || got.NextCursor != "" {
		t.Errorf("after the cursor of a purged delivery: %+v, want an empty last page", got)
	}
	list(readKey, "&cursor="+all[0], http.StatusBadRequest)
}
