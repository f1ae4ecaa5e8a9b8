package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/client"
	"github.com/transferd/transferd/internal/api"
)

// TestListsRefuseAnEmptyParameter: a list read a parameter sent with no
// value (?call_id=, ?provider=, ?cursor=) as one left out, because the Go
// client sent every parameter, empty ones included; so a hand-written
// ?call_id=$ID with $ID unset listed every transfer of the tenant instead
// of none or an error (found by review). An empty value is now a 400
// validation-error naming the parameter, on both lists, for every
// parameter they take; the contract (minLength 1, or the parameter's type)
// refuses it too, and the 400 is one it documents.
func TestListsRefuseAnEmptyParameter(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	for _, name := range []string{"state", "provider", "limit", "cursor", "external_id", "domain", "user", "call_id", "target", "created_after", "created_before"} {
		for _, q := range []string{name + "=", name + "&provider=netsapiens", "provider=netsapiens&" + name + "="} {
			if name == "provider" && q != name+"=" {
				continue
			}
			r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + q}, true)
			wantEmptyRefused(t, "GET /v1/transfers?"+q, r, name)
		}
	}
	// A repeated parameter one of whose values is empty is refused as
	// empty, state (which may repeat) included. (The contract's validator
	// reads the first value alone, so it does not see the empty one.)
	for _, q := range []string{"state=consulting&state=", "call_id=c-1&call_id="} {
		r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + q}, false)
		wantEmptyRefused(t, "GET /v1/transfers?"+q, r, strings.SplitN(q, "=", 2)[0])
	}

	ev := newEventsEnv(t)
	ev.start(t, writeKey, "1001")
	if err := ev.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	de := &env{c: e.c, srv: ev.srv, ids: map[string]string{}}
	if r := de.do(t, exchange{method: "GET", path: "/v1/webhook-deliveries"}, false); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"status":"`) {
		t.Fatalf("the deliveries listed without parameters answered %d, want 200 with the failed delivery:\n%s", r.status, r.body)
	}
	for _, name := range []string{"status", "transfer_id", "limit", "cursor"} {
		r := de.do(t, exchange{method: "GET", path: "/v1/webhook-deliveries?" + name + "="}, true)
		wantEmptyRefused(t, "GET /v1/webhook-deliveries?"+name+"=", r, name)
	}
}

// wantEmptyRefused checks that r is a 400 validation-error naming name
// alone, as empty.
func wantEmptyRefused(t *testing.T, req string, r *result, name string) {
	t.Helper()
	p := r.problem(t)
	if r.status != http.StatusBadRequest || p.Type != api.ProblemBase+"validation-error" || len(p.Errors) != 1 || p.Errors[0].Field != name ||
		!strings.Contains(string(r.body), "is empty") {
		t.Errorf("%s answered %d, want a 400 validation-error naming %s alone as empty:\n%s", req, r.status, name, r.body)
	}
}

// TestListRefusesCreatedBeforeTheZeroTime: ?created_before=0001-01-01T00:00:00Z,
// which the Go client sent for every list without that bound, is the zero
// time, which the stores read as no bound: the list answered every
// transfer, where "created before the year 1" asks for none. Since earlier
// clients mean no bound by it, neither answer is safe: it is a 400 naming
// created_before, however written (an offset, digits within its first
// microsecond, which are ignored). A bound a microsecond later is a bound
// (an empty page), and created_after at the zero time, which means every
// transfer whichever way it is read, is taken.
func TestListRefusesCreatedBeforeTheZeroTime(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.transfer(t).ID
	for _, v := range []string{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z", "0001-01-01T01:00:00%2B01:00", "0001-01-01T00:00:00.0000009Z"} {
		r := e.do(t, exchange{method: "GET", path: "/v1/transfers?created_before=" + v}, false)
		if p := r.problem(t); r.status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "created_before" ||
			!strings.Contains(string(r.body), "zero time") {
			t.Errorf("?created_before=%s answered %d, want a 400 naming created_before as the zero time:\n%s", v, r.status, r.body)
		}
	}
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers?created_before=0001-01-01T00:00:00.000001Z"}, false); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"items":[]`) {
		t.Errorf("?created_before a microsecond after the zero time answered %d, want 200 and no transfer:\n%s", r.status, r.body)
	}
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers?created_after=0001-01-01T00:00:00Z"}, false); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), id) {
		t.Errorf("?created_after=0001-01-01T00:00:00Z answered %d, want 200 with the transfer %s:\n%s", r.status, id, r.body)
	}
}

// TestAnEarlierGoClientsListIsReadAsBefore: the Go client of earlier
// releases sends every parameter of a list, those its caller left unset
// empty, and created_before at the zero time, all meaning "no filter".
// A request that carries every parameter is read as it always was, so
// that upgrading transferd does not break every list of the clients it
// has (each was a 400 with the refusal alone); one that leaves a parameter
// out is refused as TestListsRefuseAnEmptyParameter says.
func TestAnEarlierGoClientsListIsReadAsBefore(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.transfer(t).ID
	const zero = "0001-01-01T00%3A00%3A00Z"
	all := "provider=&limit=10&cursor=&external_id=&domain=&user=&call_id=&target=&created_after=" + zero + "&created_before=" + zero
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + all}, true); r.status != http.StatusOK || !strings.Contains(string(r.body), id) {
		t.Errorf("an earlier Go client's list answered %d, want 200 with the transfer %s:\n%s", r.status, id, r.body)
	}
	// Its filters, where it set them, filter.
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + strings.Replace(all, "user=&", "user=1999&", 1)}, true); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"items":[]`) {
		t.Errorf("an earlier Go client's list of another user answered %d, want 200 and no transfer:\n%s", r.status, r.body)
	}
	// One parameter fewer is not that client: its empty values are refused.
	r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + strings.Replace(all, "&target=", "", 1)}, true)
	if p := r.problem(t); r.status != http.StatusBadRequest || len(p.Errors) < 2 {
		t.Errorf("a list with every parameter but target, the rest empty, answered %d, want a 400 naming each empty one:\n%s", r.status, r.body)
	}

	ev := newEventsEnv(t)
	ev.start(t, writeKey, "1001")
	if err := ev.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	de := &env{c: e.c, srv: ev.srv, ids: map[string]string{}}
	if r := de.do(t, exchange{method: "GET", path: "/v1/webhook-deliveries?transfer_id=&limit=10&cursor="}, true); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"status":"`) {
		t.Errorf("an earlier Go client's list of deliveries answered %d, want 200 with the failed delivery:\n%s", r.status, r.body)
	}
}

// TestTheEventStreamRefusesAnEmptyTransferID: GET /v1/events?transfer_id=
// (a hand-written ?transfer_id=$ID with $ID unset) read the empty value as
// left out and streamed every transfer's events to a client that asked
// for one's. It is now a 400 validation-error naming transfer_id. An empty
// after is a position not known yet, as an EventSource's first URL may
// carry it: the stream starts from now, as without it.
func TestTheEventStreamRefusesAnEmptyTransferID(t *testing.T) {
	ev := newEventsEnv(t)
	res := ev.req(t, "GET", "/v1/events?transfer_id=", readKey, "")
	var body []byte
	if res.StatusCode != http.StatusOK { // a stream would not end
		body, _ = io.ReadAll(res.Body)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"field":"transfer_id"`) || !strings.Contains(string(body), "is empty") {
		t.Errorf("GET /v1/events?transfer_id= answered %d, want a 400 naming transfer_id as empty:\n%s", res.StatusCode, body)
	}
	s := ev.stream(t, readKey, "?after=")
	// The Go client of earlier releases sent both parameters, empty when
	// its caller left them unset: a stream of every transfer, as before.
	// Found by review: refused, every stream of that client was a 400.
	old := ev.stream(t, readKey, "?transfer_id=&after=")
	id := ev.start(t, writeKey, "1001")
	if _, got := s.next(t); got.TransferID != id {
		t.Errorf("the stream opened with an empty after sent %+v first, want an event of %s, created after it opened", got, id)
	}
	if _, got := old.next(t); got.TransferID != id {
		t.Errorf("an earlier Go client's stream sent %+v first, want an event of %s", got, id)
	}
	// The Go client now sends only what its caller set.
	req, err := client.NewStreamEventsRequest("http://transferd.test", &client.StreamEventsParams{})
	if err != nil {
		t.Fatal(err)
	}
	if q := req.URL.Query(); q.Has("transfer_id") || q.Has("after") {
		t.Errorf("the Go client's stream of every transfer asks for %s: want neither parameter sent", req.URL)
	}
}
