package api_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// switchedTenants forbids every tenant its provider until allowed is set,
// as a replica whose tenants file lags behind the others does.
type switchedTenants struct{ allowed atomic.Bool }

func (s *switchedTenants) Permit(string, *orchestrator.Request) error {
	if !s.allowed.Load() {
		return &api.Forbidden{Field: "provider", Detail: "is not one of this tenant's providers []"}
	}
	return nil
}

func (s *switchedTenants) Limits(string) api.Limits { return api.Limits{} }

// keyHeld reports whether store keeps a record of key under scope, a
// reservation or a remembered answer, by trying to reserve it: a record
// it keeps refuses the reservation. A probe that got it gives it back.
func keyHeld(t *testing.T, store orchestrator.Store, scope, key string) bool {
	t.Helper()
	ctx := context.Background()
	probe := orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "probe",
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond), Owner: "probe"}
	_, mine, err := store.ReserveIdempotency(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	if mine {
		if err := store.DeleteIdempotency(ctx, scope, key, probe.CreatedAt); err != nil {
			t.Fatal(err)
		}
	}
	return !mine
}

// A refused request did nothing, and its Idempotency-Key keeps no record
// of it: neither a durable row per fresh key that a client could pile up
// for the retention period (500 invalid creates made 500 rows), nor a
// refusal replayed once its cause is gone. An invalid create, a create
// outside the tenant's allow-list (403) and a cancel of an unknown
// transfer (404) each leave no record, and the same key then serves the
// request made right; a 2xx is still remembered and replayed. On the
// memory store and on SQLite.
func TestRefusedRequestLeavesNoIdempotencyRecord(t *testing.T) {
	stores := map[string]func(t *testing.T) orchestrator.Store{
		"memory": func(*testing.T) orchestrator.Store { return memory.New() },
		"sqlite": func(t *testing.T) orchestrator.Store {
			s, err := sqlite.Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			tenants := &switchedTenants{}
			tenants.allowed.Store(true)
			fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
			e := newLimitedEnvStore(t, fake, api.Config{Tenants: tenants}, store)
			createScope := orchestrator.DefaultTenant + " POST /v1/transfers"

			// An invalid create: 400, no record; the same key with the
			// body made right is served.
			invalid := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "invalid-1"),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"8000"},"target":"1010","consult_timeout":"soon"}`}
			if r := e.do(t, invalid, true); r.status != http.StatusBadRequest {
				t.Fatalf("invalid create: %d %s, want 400", r.status, r.body)
			}
			if keyHeld(t, store, createScope, "invalid-1") {
				t.Errorf("the key of an invalid create keeps a record")
			}
			fixed := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "invalid-1"),
				body: createBody("8000", "manual")}
			if r := e.do(t, fixed, false); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("the create made right, with the invalid one's key: %d, Idempotent-Replayed %q %s; want 202 served",
					r.status, r.header.Get("Idempotent-Replayed"), r.body)
			} else {
				// A 2xx is remembered: its repeat is replayed.
				created := r.transfer(t).ID
				again := e.do(t, fixed, false)
				if again.status != http.StatusAccepted || again.header.Get("Idempotent-Replayed") != "true" || again.transfer(t).ID != created {
					t.Errorf("a repeat of the 202: %d, Idempotent-Replayed %q %s; want the 202 of %s replayed",
						again.status, again.header.Get("Idempotent-Replayed"), again.body, created)
				}
			}

			// A create outside the tenant's allow-list: 403, no record;
			// once the tenants file allows it, the same request with the
			// same key is served.
			tenants.allowed.Store(false)
			forbidden := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "forbidden-1"),
				body: createBody("8001", "manual")}
			if r := e.do(t, forbidden, false); r.status != http.StatusForbidden {
				t.Fatalf("create outside the allow-list: %d %s, want 403", r.status, r.body)
			}
			if keyHeld(t, store, createScope, "forbidden-1") {
				t.Errorf("the key of a create refused 403 keeps a record")
			}
			tenants.allowed.Store(true)
			if r := e.do(t, forbidden, false); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("the create once allowed, with the refused one's key: %d, Idempotent-Replayed %q %s; want 202 served",
					r.status, r.header.Get("Idempotent-Replayed"), r.body)
			}

			// A cancel of a transfer that does not exist: 404, no record.
			unknown := orchestrator.NewID(time.Now())
			cancel := exchange{method: "POST", path: "/v1/transfers/" + unknown + "/cancel", header: jsonHeader("Idempotency-Key", "cancel-1")}
			if r := e.do(t, cancel, false); r.status != http.StatusNotFound {
				t.Fatalf("cancel of an unknown transfer: %d %s, want 404", r.status, r.body)
			}
			if keyHeld(t, store, orchestrator.DefaultTenant+" POST /v1/transfers/"+unknown+"/cancel", "cancel-1") {
				t.Errorf("the key of a cancel of an unknown transfer keeps a record")
			}
		})
	}
}
