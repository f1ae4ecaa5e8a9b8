package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// upgradedEnv serves a SQLite store that an older version, whose stream
// sent outbox positions as ids, left with the default tenant's transfers
// at positions 1 to 7, of which it purged the last two (6 and 7, which
// its clients may have seen) before the upgrade to the sealed ids. It
// returns the server and the ids of the five transfers left.
func upgradedEnv(t *testing.T) (*eventsEnv, []string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for i := range 7 {
		now := time.Now().UTC()
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant, State: orchestrator.StatePending,
			CreatedAt: now, UpdatedAt: now, Request: orchestrator.Request{Provider: "netsapiens",
				Call: orchestrator.CallRef{Domain: "acme.example", User: strconv.Itoa(2000 + i)}, Target: "1010"}}
		tr.EventSeq = 1
		tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
			Seq: 1, Type: orchestrator.EventCreated, At: now}}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		tr.Outbox, tr.State = nil, orchestrator.StateCompleted
		if i >= 5 {
			tr.UpdatedAt = now.Add(-48 * time.Hour) // past the retention
		} else {
			kept = append(kept, tr.ID)
		}
		if err := s.Update(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Purge(ctx, time.Now().Add(-24*time.Hour), 0); err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want the last two", n, err)
	}
	s.Close()
	u := url.URL{Path: filepath.Join(dir, sqlite.FileName)}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath())
	if err != nil {
		t.Fatal(err)
	}
	// Schemas 13 (webhook payloads apart), 14 (the deliveries' list
	// indexes), 15 (the index of calls' owing transfers) and 16 (the
	// heartbeats' tokens) undone too: this test makes no deliveries and
	// no cleanups.
	for _, q := range []string{`ALTER TABLE replicas DROP COLUMN token`, `DROP INDEX transfers_owing_call`, `DROP INDEX webhook_deliveries_status`, `DROP INDEX webhook_deliveries_failing`,
		`DROP INDEX webhook_deliveries_transfer`, `DROP TRIGGER webhook_payloads_go`, `DROP TABLE webhook_payloads`,
		`ALTER TABLE webhook_deliveries RENAME COLUMN rec TO record`,
		`DROP TABLE event_id_key`, `DELETE FROM schema_migrations WHERE version >= 12`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to the older version's schema: %v", err)
		}
	}
	db.Close()
	store, err := sqlite.Open(ctx, dir) // the upgrade
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return eventsServer(t, store, prometheus.NewRegistry(), api.Config{Idempotency: store}), kept
}

// A client of the older version resumes after the upgrade with the plain
// number it last saw: after its event if that is still stored, and, if it
// names a later one (purged before the upgrade, or sent by an older
// replica still running), after the outbox's last position at the
// upgrade: nothing lost. Such a number was refused (found by review): a
// 400, after which EventSource does not reconnect.
func TestOlderClientsResumeAcrossTheUpgrade(t *testing.T) {
	e, kept := upgradedEnv(t)
	if _, ev := e.stream(t, readKey, "", "Last-Event-ID", "3").next(t); ev.TransferID != kept[3] {
		t.Errorf("resumed after position 3 with %s, want the transfer at 4 (%s)", ev.TransferID, kept[3])
	}
	s := e.stream(t, readKey, "", "Last-Event-ID", "7")
	id := e.start(t, writeKey, "3001")
	if _, ev := s.next(t); ev.TransferID != id || ev.Seq != 1 {
		t.Errorf("resumed after the purged position 7 with %s seq %d, want the new transfer %s seq 1", ev.TransferID, ev.Seq, id)
	}
}

// Whatever plain number a tenant sends, its stream opens: the answer does
// not tell it the outbox's last position at the upgrade, which counts
// every tenant's events. Numbers past it were refused (found by review):
// a tenant with no event before the upgrade learnt by bisection how many
// events the others had made.
func TestOlderIDsTellNothingOfOtherTenants(t *testing.T) {
	e, _ := upgradedEnv(t)
	for _, n := range []string{"0", "4", "5", "6", "7", "8", strconv.Itoa(1 << 40), "99999999999999999999"} {
		res := e.req(t, "GET", "/v1/events", otherReadKey, "", "Last-Event-ID", n)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("tenant %s's stream after %s: %d, want 200 for every number", otherTenant, n, res.StatusCode)
		}
	}
	// The streams above wait for events until the server closes; the
	// other tenant's next one is its own.
	s := e.stream(t, otherReadKey, "", "Last-Event-ID", "6")
	id := e.start(t, otherWriteKey, "3002")
	if _, ev := s.next(t); ev.TransferID != id {
		t.Errorf("tenant %s's stream sent %s, want its own %s", otherTenant, ev.TransferID, id)
	}
}
