package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestRedeliverTakesInputAsTheActionsDo: POST
// /v1/webhook-deliveries/{id}/redeliver takes no input, as /complete and
// /cancel, yet it accepted any body in any media type, ?dry_run=1 and an
// Idempotency-Key of any shape, and a repeat with a valid key redelivered
// again instead of replaying the first answer; its 404 said "no transfer
// with this id" (found by review). Every exchange is checked against
// openapi.yaml too.
func TestRedeliverTakesInputAsTheActionsDo(t *testing.T) {
	ev := newEventsEnv(t)
	id := ev.start(t, writeKey, "1005")
	if err := ev.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead := decodeBody[struct{ Items []deliveryBody }](t,
		ev.req(t, "GET", "/v1/webhook-deliveries?status=dead&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(dead) == 0 {
		t.Fatal("no dead letter to redeliver")
	}
	e := &env{c: loadContract(t), srv: ev.srv, eng: ev.eng, ids: map[string]string{"d": dead[0].ID}}
	const path = "/v1/webhook-deliveries/<d>/redeliver"

	for _, c := range []struct {
		name string
		x    exchange
		// specRejects: the contract refuses the request too.
		specRejects bool
		status      int
		problem     string
		field       string
	}{
		{"a body", exchange{method: "POST", path: path, header: jsonHeader(), body: `{"force":true}`}, false,
			http.StatusBadRequest, "validation-error", "force"},
		{"a body that is not JSON", exchange{method: "POST", path: path, header: map[string]string{"Content-Type": "text/plain"}, body: "again"}, false,
			http.StatusUnsupportedMediaType, "unsupported-media-type", ""},
		{"a query parameter", exchange{method: "POST", path: path + "?dry_run=1"}, false,
			http.StatusBadRequest, "validation-error", "dry_run"},
		{"an invalid Idempotency-Key", exchange{method: "POST", path: path, header: map[string]string{"Idempotency-Key": "has spaces in it"}}, true,
			http.StatusBadRequest, "validation-error", "Idempotency-Key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.x, c.specRejects)
			if r.status != c.status {
				t.Fatalf("answered %d, want %d %s naming %q:\n%s", r.status, c.status, c.problem, c.field, r.body)
			}
			if p := r.problem(t); !strings.HasSuffix(p.Type, "#"+c.problem) || c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
				t.Errorf("answered %s, want %s naming %q:\n%s", p.Type, c.problem, c.field, r.body)
			}
		})
	}
	// Nothing refused was redelivered: the dead letter is still dead.
	still := decodeBody[struct{ Items []deliveryBody }](t,
		ev.req(t, "GET", "/v1/webhook-deliveries?status=dead&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(still) != len(dead) {
		t.Fatalf("%d dead letters after the refused redeliveries, want %d: one was redelivered", len(still), len(dead))
	}

	keyed := exchange{method: "POST", path: path, header: map[string]string{"Idempotency-Key": "redeliver-1"}}
	first := e.do(t, keyed, false)
	if first.status != http.StatusAccepted || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("a redelivery with a key: %d, Idempotent-Replayed %q, want 202 served:\n%s",
			first.status, first.header.Get("Idempotent-Replayed"), first.body)
	}
	again := e.do(t, keyed, false)
	if again.status != http.StatusAccepted || again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) {
		t.Errorf("its repeat: %d, Idempotent-Replayed %q, want the first answer replayed:\n%s\n%s",
			again.status, again.header.Get("Idempotent-Replayed"), first.body, again.body)
	}
	if r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader(), body: `{}`}, false); r.status != http.StatusAccepted {
		t.Errorf("a redelivery with the empty object, which the actions tolerate: %d\n%s", r.status, r.body)
	}

	missing := e.do(t, exchange{method: "POST", path: "/v1/webhook-deliveries/dlv_0123456789abcdef01234567/redeliver"}, false)
	if missing.status != http.StatusNotFound || !strings.Contains(string(missing.body), "no webhook delivery with this id") {
		t.Errorf("an unknown delivery: %d, want 404 saying no webhook delivery has the id:\n%s", missing.status, missing.body)
	}
}
