package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/storetest"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// envURL names the database the tests may use. Each test works in a
// schema of its own (created and dropped around it), so tests and test
// packages can run in parallel against one database.
const envURL = "TRANSFERD_TEST_DATABASE_URL"

func baseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		t.Skip("set " + envURL + " to a PostgreSQL database to run these tests, e.g. " +
			"postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable (each test uses a schema of its own)")
	}
	return u
}

// newSchema creates an empty schema, dropped when the test ends, and
// returns its name.
func newSchema(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 8)
	rand.Read(b)
	schema := "transferd_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", envURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// inSchema returns base with search_path set to schema.
func inSchema(base, schema string) string { return withParam(base, "search_path", schema) }

// withParam returns base with the connection parameter name set to value,
// for both URL and key=value connection strings.
func withParam(base, name, value string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(name, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " " + name + "=" + value
}

// open returns a store in a fresh schema, closed (before the schema is
// dropped) when the test ends.
func open(t testing.TB) *postgres.Store {
	t.Helper()
	s, _ := openWithURL(t)
	return s
}

// openWithURL opens a store in a schema of its own, closed with the test,
// and returns it with the schema's URL, for a test that also connects to
// it directly (connect).
func openWithURL(t testing.TB) (*postgres.Store, string) {
	t.Helper()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, url
}

// connect opens a connection to url, closed with the test.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// undoSchema18 takes a database back to before schema 18 (the token of
// each heartbeat's process) and 19 (the refusal of an older release's
// heartbeat), for the tests that take it back to an older schema and open
// it again.
func undoSchema18(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), `DROP TRIGGER replicas_a_stamp ON replicas;
		DROP TRIGGER replicas_b_older_release ON replicas;
		DROP FUNCTION replicas_stamp(), replicas_older_release();
		ALTER TABLE replicas DROP COLUMN stamp, DROP COLUMN token;
		DELETE FROM schema_migrations WHERE version >= 18`); err != nil {
		t.Fatalf("back to schema 17: %v", err)
	}
}

// undoSchema17 takes a database back to before schema 17 (the index of
// the calls' ended transfers that owe them), as undoSchema18 does.
func undoSchema17(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema18(t, conn)
	if _, err := conn.Exec(context.Background(), `DROP INDEX transfers_owing_call;
		DELETE FROM schema_migrations WHERE version >= 17`); err != nil {
		t.Fatalf("back to schema 16: %v", err)
	}
}

// undoSchema16 takes a database back to before schema 16 (the indexes of
// the deliveries' lists by kind and by transfer), as undoSchema17 does.
func undoSchema16(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema17(t, conn)
	if _, err := conn.Exec(context.Background(), `DROP INDEX webhook_deliveries_status;
		DROP INDEX webhook_deliveries_failing;
		DROP INDEX webhook_deliveries_transfer;
		DELETE FROM schema_migrations WHERE version >= 16`); err != nil {
		t.Fatalf("back to schema 15: %v", err)
	}
}

// undoSchema15 takes a database back to before schema 15 (webhook
// deliveries' payloads apart from their records), each payload back in its
// record as schema 14 kept it, for the tests that take it back to an
// older schema and open it again. PostgreSQL's base64 breaks its lines;
// encoding/json's does not.
func undoSchema15(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema16(t, conn)
	if _, err := conn.Exec(context.Background(), `UPDATE webhook_deliveries d
			SET rec = d.rec || jsonb_build_object('Payload', translate(encode(p.payload, 'base64'), E'\n', ''))
			FROM webhook_payloads p WHERE p.id = d.id;
		DROP TABLE webhook_payloads;
		ALTER TABLE webhook_deliveries RENAME COLUMN rec TO record;
		DELETE FROM schema_migrations WHERE version >= 15`); err != nil {
		t.Fatalf("back to schema 14: %v", err)
	}
}

// undoSchema14 takes a database back to before schema 14 (lz4 for
// webhook delivery records), as undoSchema15 does.
func undoSchema14(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema15(t, conn)
	if _, err := conn.Exec(context.Background(), `ALTER TABLE webhook_deliveries ALTER COLUMN record SET COMPRESSION default;
		DELETE FROM schema_migrations WHERE version >= 14`); err != nil {
		t.Fatalf("back to schema 13: %v", err)
	}
}

// undoSchema13 takes a database back to before schema 13 (the event id
// key), for the tests that take it back to an older schema and open it
// again: the migrations then run again from there.
func undoSchema13(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema14(t, conn)
	if _, err := conn.Exec(context.Background(), `DROP TABLE event_id_key; DELETE FROM schema_migrations WHERE version >= 13`); err != nil {
		t.Fatalf("back to schema 12: %v", err)
	}
}

// undoSchema12 takes a database back to before schema 12 (the claim's
// ready_at), as undoSchema13 does.
func undoSchema12(t testing.TB, conn *pgx.Conn) {
	t.Helper()
	undoSchema13(t, conn)
	if _, err := conn.Exec(context.Background(), `DROP INDEX webhook_deliveries_ready; DROP INDEX webhook_deliveries_ready_endpoint;
		ALTER TABLE webhook_deliveries DROP COLUMN ready_at;
		CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (pos) WHERE status = 'pending';
		DELETE FROM schema_migrations WHERE version >= 12`); err != nil {
		t.Fatalf("back to schema 11: %v", err)
	}
}

func TestConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) orchestrator.Store { return open(t) })
}

// Replicas starting at once all migrate successfully, once, and share
// one event id key, which later starts keep.
func TestOpenConcurrentMigrations(t *testing.T) {
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	const replicas = 6
	errs := make([]error, replicas)
	stores := make([]*postgres.Store, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(context.Background(), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
		} else {
			defer stores[i].Close()
		}
	}
	var keys []orchestrator.EventIDKey
	for i := range replicas {
		if stores[i] != nil {
			k, err := stores[i].EventIDKey(context.Background())
			if err != nil {
				t.Fatalf("replica %d: EventIDKey: %v", i, err)
			}
			keys = append(keys, k)
		}
	}
	for range 2 { // and again: migrations are idempotent
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("re-open: %v", err)
		}
		k, err := s.EventIDKey(context.Background())
		if err != nil {
			t.Fatalf("re-open: EventIDKey: %v", err)
		}
		keys = append(keys, k)
		s.Close()
	}
	for _, k := range keys {
		if k != keys[0] || k.Secret == ([32]byte{}) || k.LegacyBelow != 0 {
			t.Fatalf("event id keys %+v, want one, with a secret, and nothing older to honour", keys)
		}
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || !slices.Equal(versions, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}) {
		t.Errorf("schema_migrations = %v, %v; want [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19]", versions, err)
	}
}

// A database migrated by a newer transferd is refused, not written to.
func TestOpenRefusesNewerSchema(t *testing.T) {
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future')`); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(context.Background(), url)
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.HasPrefix(err.Error(), "postgres: ") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

// The password of the database URL never appears in an error, whether
// the URL does not parse or the server cannot be reached. Needs no
// database.
func TestOpenErrorsRedactPassword(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	for _, url := range []string{
		"postgres://transferd:" + pw + "@127.0.0.1:1/transferd?sslmode=disable&connect_timeout=2",
		"postgresql://transferd:" + pw + "@127.0.0.1:notaport/transferd",
		"postgres://transferd:" + pw + "@127.0.0.1:1/transferd?sslmode=bogus",
		"postgres://transferd:" + pw + "@[::1/transferd",
		"postgres://127.0.0.1:1/transferd?sslmode=disable&connect_timeout=2&password=" + pw,
		"host=127.0.0.1 port=1 user=transferd password=" + pw + " sslmode=disable connect_timeout=2",
		"host=127.0.0.1 port=1 user=transferd password='" + pw + "' sslmode=bogus",
		"host=127.0.0.1 port=notaport user=transferd password=" + pw,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := postgres.Open(ctx, url)
		cancel()
		if err == nil {
			t.Errorf("Open(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open(%q) error leaks the password: %v", url, err)
		}
		if !strings.HasPrefix(err.Error(), "postgres: open") {
			t.Errorf("Open(%q) error does not name the store: %v", url, err)
		}
	}
}

// Errors name the store and the operation.
func TestErrorsNameStoreAndOperation(t *testing.T) {
	s := open(t)
	now := time.Now()
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Version: 1, State: orchestrator.StatePending,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "D", User: "1000"}}}
	err := s.Update(context.Background(), tr)
	if want := "postgres: update " + tr.ID + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Update of an unknown transfer: %v, want prefix %q", err, want)
	}
}

// The SQL lists of terminal states are orchestrator.State.Terminal.
func TestTerminalStatesMatchTheOrchestrator(t *testing.T) {
	var term []string
	for _, s := range orchestrator.States {
		if s.Terminal() {
			term = append(term, "'"+string(s)+"'")
		}
	}
	slices.Sort(term)
	list := "(" + strings.Join(term, ", ") + ")"
	if list != postgres.TerminalList {
		t.Errorf("queries use %s, the orchestrator's terminal states are %s", postgres.TerminalList, list)
	}
	mig, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mig), "state NOT IN "+list) + strings.Count(string(mig), "state IN "+list); n != 3 {
		t.Errorf("the migration's partial indexes use %s in %d places, want 3", list, n)
	}
	mig, err = os.ReadFile("migrations/0002_heartbeats.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mig), "state NOT IN "+list); n != 1 {
		t.Errorf("the migration that fills open uses %s in %d places, want 1", list, n)
	}
}

// oldRecord is the JSON a transfer of schema 1 was saved as: with the
// Undo and LeaseExpires fields that Transfer no longer has.
func oldRecord(t *testing.T, tr *orchestrator.Transfer, lease time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["Undo"] = []any{map[string]any{"Action": "unhold", "Done": false}}
	m["LeaseExpires"] = lease
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return b
}

// A database of schema 1, with leases in its rows and records carrying
// the old fields, migrates: its transfers decode, the unfinished one is
// claimable from its lease-holding owner, the ended one purgeable, and
// the pending reservation (no owner) settles.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	active := &orchestrator.Transfer{ID: orchestrator.NewID(at), Version: 3, State: orchestrator.StateConsulting,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: "1010"},
		Owner:   "old-replica", CreatedAt: at, UpdatedAt: at}
	ended := &orchestrator.Transfer{ID: orchestrator.NewID(at.Add(time.Second)), Version: 5, State: orchestrator.StateCompleted,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "2000"}, Target: "1010"},
		Owner:   "old-replica", CreatedAt: at, UpdatedAt: at}
	for _, q := range []string{string(init),
		`CREATE TABLE schema_migrations (version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init')`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range []*orchestrator.Transfer{active, ended} {
		if _, err := conn.Exec(ctx, `INSERT INTO transfers (id, version, state, provider, call_key, owner, lease_expires, created_at, updated_at, record)
			VALUES ($1, $2, $3, 'netsapiens', $4, $5, $6, $7, $7, $8)`, tr.ID, tr.Version, string(tr.State), orchestrator.CallKey(&tr.Request),
			tr.Owner, at.Add(time.Minute), at, oldRecord(t, tr, at.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO signals VALUES ($1, 'cancel')`, active.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES ('POST /v1/transfers', 'k', 'h', $1)`, at); err != nil {
		t.Fatal(err)
	}

	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open of a schema 1 database: %v", err)
	}
	defer s.Close()
	got, err := s.Get(ctx, active.ID)
	if err != nil {
		t.Fatalf("Get of a schema 1 record: %v", err)
	}
	if got.State != orchestrator.StateConsulting || got.Owner != "old-replica" || got.Version != 3 || !got.CreatedAt.Equal(at) {
		t.Errorf("schema 1 record decoded as %+v", got)
	}
	// The list keys, filled by migration 3 and moved to transfer_keys by
	// migration 7, find the old rows.
	for name, c := range map[string]struct {
		f    orchestrator.ListFilter
		want []string
	}{
		"target":         {orchestrator.ListFilter{Target: "1010"}, []string{ended.ID, active.ID}},
		"call":           {orchestrator.ListFilter{Domain: "test", User: "2000"}, []string{ended.ID}},
		"created before": {orchestrator.ListFilter{CreatedBefore: at.Add(time.Second)}, []string{ended.ID, active.ID}},
		"state":          {orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateConsulting}}, []string{active.ID}},
	} {
		c.f.Tenant, c.f.Limit = orchestrator.DefaultTenant, 10
		list, _, err := s.List(ctx, c.f)
		var ids []string
		for _, tr := range list {
			ids = append(ids, tr.ID)
		}
		if err != nil || !slices.Equal(ids, c.want) {
			t.Errorf("List by %s after the migration = %v, %v; want %v", name, ids, err, c.want)
		}
	}
	now := at.Add(time.Hour)
	claimed, err := s.Claim(ctx, "new", "", now, false, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != active.ID || claimed[0].Version != 4 {
		t.Fatalf("Claim after the migration = %v, %v; want %s at version 4", claimed, err, active.ID)
	}
	if ids, err := s.Signalled(ctx, "new"); err != nil || !slices.Equal(ids, []string{active.ID}) {
		t.Errorf("Signalled = %v, %v; want %s", ids, err, active.ID)
	}
	if n, err := s.SettleIdempotency(ctx, "new", now, time.Time{}); err != nil || n != 1 {
		t.Errorf("SettleIdempotency = %d, %v; want the old reservation deleted", n, err)
	}
	if n, err := s.Purge(ctx, now, 0); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want the ended transfer", n, err)
	}
	if _, err := s.Get(ctx, active.ID); err != nil {
		t.Errorf("the unfinished transfer after Purge: %v", err)
	}
	var leaseColumns int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'transfers' AND column_name = 'lease_expires'`).Scan(&leaseColumns); err != nil || leaseColumns != 0 {
		t.Errorf("lease_expires columns after the migration: %d, %v; want 0", leaseColumns, err)
	}
}

// Purge works through a backlog in statements of a bounded size, and a
// limit that is not a multiple of it is honoured exactly.
func TestPurgeInBatches(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	postgres.SetPurgeBatch(s, 2)
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 7 {
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(at.Add(time.Duration(i) * time.Second)), State: orchestrator.StateCompleted,
			Request:   orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "D", User: strconv.Itoa(i)}},
			CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Purge(ctx, at.Add(time.Hour), 3); err != nil || n != 3 {
		t.Errorf("Purge(limit 3) = %d, %v; want 3", n, err)
	}
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); err != nil || n != 4 {
		t.Errorf("Purge(no limit) = %d, %v; want 4", n, err)
	}
	for i := range 7 {
		if _, fresh, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil || !fresh {
			t.Errorf("idempotency key %d survived Purge (%v)", i, err)
		}
	}
}

// A purge rests after each full batch, for as long as that batch took,
// and not after the short batch that ends it: after the transfers' and
// the idempotency keys' batches, after the webhook deliveries', and after
// a batch that fills a limited call, so that the engine's next call comes
// after the rest. A purge stopped during a rest returns what it deleted.
func TestPurgeRestsAfterFullBatches(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	postgres.SetPurgeBatch(s, 2)
	tick := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var rests []time.Duration
	// Every batch reads the clock before and after its statement: 7 ms.
	postgres.SetPurgePace(s, func() time.Time { tick = tick.Add(7 * time.Millisecond); return tick },
		func(_ context.Context, d time.Duration) error { rests = append(rests, d); return nil })
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	terminal := func(n int) {
		t.Helper()
		for range n {
			tr := &orchestrator.Transfer{ID: orchestrator.NewID(at), State: orchestrator.StateCompleted,
				Request:   orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "D", User: "1000"}},
				CreatedAt: at, UpdatedAt: at}
			if err := s.Create(ctx, tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	terminal(5)
	for i := range 5 {
		if _, _, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, want int) {
		t.Helper()
		if len(rests) != want {
			t.Errorf("%s: %d rests, want %d", what, len(rests), want)
		}
		for i, d := range rests {
			if d != 7*time.Millisecond {
				t.Errorf("%s: rest %d took %v, want the 7ms its batch took", what, i, d)
			}
		}
		rests = nil
	}
	// Transfers: one full batch (the limit); the keys wait for the call
	// that finds the end.
	if n, err := s.Purge(ctx, at.Add(time.Hour), 2); n != 2 || err != nil {
		t.Fatalf("Purge(limit 2) = %d, %v; want 2", n, err)
	}
	check("Purge(limit 2)", 1)
	// Transfers: 2, then 1; keys: 2, 2, then 1.
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); n != 3 || err != nil {
		t.Fatalf("Purge(no limit) = %d, %v; want 3", n, err)
	}
	check("Purge(no limit)", 1+2)

	webhookstest.Finished(t, s, map[string]webhookstest.Finish{
		"tr_a": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
		"tr_b": {Status: webhooks.StatusDead, At: time.Now().Add(-48 * time.Hour)},
		"tr_c": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
	})
	if n, err := s.PurgeDeliveries(ctx, time.Now(), 0); n != 3 || err != nil {
		t.Fatalf("PurgeDeliveries = %d, %v; want 3", n, err)
	}
	check("PurgeDeliveries", 1)

	terminal(3)
	postgres.SetPurgePace(s, time.Now, func(context.Context, time.Duration) error { return context.Canceled })
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); n != 2 || !errors.Is(err, context.Canceled) {
		t.Errorf("Purge stopped in its first rest = %d, %v; want 2 and the context's error", n, err)
	}
}

func BenchmarkUpdate(b *testing.B)         { storetest.BenchUpdate(b, open(b)) }
func BenchmarkCreate(b *testing.B)         { storetest.BenchCreate(b, open(b)) }
func BenchmarkUpdateParallel(b *testing.B) { storetest.BenchUpdateParallel(b, open(b)) }
func BenchmarkHeartbeat(b *testing.B)      { storetest.BenchHeartbeat(b, open(b)) }
func BenchmarkClaimIdle(b *testing.B)      { storetest.BenchClaimIdle(b, open(b), 1000) }

// A URL asking for a query mode without statement descriptions is refused
// at Open, naming the setting, instead of failing every save. Needs no
// database.
func TestOpenRefusesQueryModesWithoutDescriptions(t *testing.T) {
	for _, mode := range []string{"exec", "simple_protocol"} {
		url := "postgres://transferd@127.0.0.1:1/transferd?sslmode=disable&connect_timeout=2&default_query_exec_mode=" + mode
		_, err := postgres.Open(context.Background(), url)
		if err == nil || !strings.Contains(err.Error(), "default_query_exec_mode="+mode+" is not supported") {
			t.Errorf("Open with default_query_exec_mode=%s: %v, want a refusal naming it", mode, err)
		}
	}
}

// A database of schema 12 with events in its outbox gets its event id key
// from schema 13, which honours the ids an older version sent up to the
// outbox's last position then.
func TestMigrationMakesTheEventIDKey(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"1000", "2000"} {
		now := time.Now().UTC()
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, CreatedAt: now, UpdatedAt: now,
			Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "test", User: user}, Target: "1010"}}
		tr.EventSeq = 1
		tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
			Seq: 1, Type: orchestrator.EventCreated, At: tr.CreatedAt}}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	undoSchema13(t, conn)
	var last int64
	if err := conn.QueryRow(ctx, `SELECT max(pos) FROM events`).Scan(&last); err != nil || last < 2 {
		t.Fatalf("the outbox's last position %d (%v)", last, err)
	}
	if s, err = postgres.Open(ctx, url); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if k, err := s.EventIDKey(ctx); err != nil || k.LegacyBelow != last || k.Secret == ([32]byte{}) {
		t.Fatalf("event id key %+v (%v), want ids up to %d honoured", k, err, last)
	}
}
