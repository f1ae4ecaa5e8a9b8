package sqlite_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// benchRows is the number of stored transfers of the scale benchmarks:
// TRANSFERD_BENCH_ROWS (issue #11 measures at 1000000), else 100000.
func benchRows(b *testing.B) int {
	if v := os.Getenv("TRANSFERD_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("TRANSFERD_BENCH_ROWS: %v", err)
		}
		return n
	}
	return 100_000
}

// fill stores n transfers of tenant acme directly through SQL in one
// transaction (saving them one by one would take an fsync each): one in
// 100 open (consulting), the others completed, updated at `at`, spread
// over 50 targets and 1000 users.
func fill(b *testing.B, dir string, n int, at time.Time) {
	b.Helper()
	s, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	db := rawDB(b, dir)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO transfers (id, version, state, provider, call_key, owner, open, created_at, updated_at, record,
		tenant, external_id, call_domain, call_user, call_id, target) VALUES (?, 1, ?, 'netsapiens', ?, '', ?, ?, ?, ?, 'acme', ?, 'test', ?, '', ?)`)
	if err != nil {
		b.Fatal(err)
	}
	const layout = "2006-01-02T15:04:05.000000000Z"
	for i := range n {
		created := at.Add(time.Duration(i) * time.Millisecond)
		t := &orchestrator.Transfer{ID: orchestrator.NewID(created), Version: 1, Tenant: "acme", State: orchestrator.StateCompleted,
			Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "test", User: strconv.Itoa(i % 1000)},
				Target: strconv.Itoa(1000 + i%50), ExternalID: "crm-" + strconv.Itoa(i)},
			CreatedAt: created, UpdatedAt: at}
		open := i%100 == 0
		if open {
			t.State = orchestrator.StateConsulting
			t.Request.Call.User = "open-" + strconv.Itoa(i)
		}
		rec, err := json.Marshal(t)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stmt.Exec(t.ID, string(t.State), orchestrator.TenantCallKey(t), open, created.UTC().Format(layout), at.UTC().Format(layout),
			string(rec), t.Request.ExternalID, t.Request.Call.User, t.Request.Target); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkListAtScale lists a page of 50 of each kind the API offers
// with benchRows transfers stored (issue #11: p99 ≤ 20 ms at 1M).
func BenchmarkListAtScale(b *testing.B) {
	dir := b.TempDir()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := benchRows(b)
	fill(b, dir, n, at)
	s := open(b, dir)
	mid := at.Add(time.Duration(n/2) * time.Millisecond)
	filters := map[string]orchestrator.ListFilter{
		"tenant":             {},
		"state=consulting":   {States: []orchestrator.State{orchestrator.StateConsulting}},
		"state=completed":    {States: []orchestrator.State{orchestrator.StateCompleted}},
		"states=active":      {States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding, orchestrator.StateDialing, orchestrator.StateConsulting}},
		"provider":           {Provider: "netsapiens"},
		"external_id":        {ExternalID: "crm-" + strconv.Itoa(n/2)},
		"call":               {Domain: "TEST", User: "7"},
		"target":             {Target: "1007"},
		"created_after=mid":  {CreatedAfter: mid},
		"created_before=mid": {CreatedBefore: mid},
		"cursor=mid":         {After: orchestrator.NewID(mid)},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range filters {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		f := filters[name]
		f.Tenant, f.Limit = "acme", 50
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.List(context.Background(), f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSaveDuringPurge saves one transfer over and over while Purge
// deletes benchRows/10 closed transfers, and reports the longest and the
// 99th percentile save: issue #11 wants no save to wait more than 100 ms
// behind a purge.
func BenchmarkSaveDuringPurge(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		n := benchRows(b) / 10
		fill(b, dir, n, at)
		s, err := sqlite.Open(context.Background(), dir)
		if err != nil {
			b.Fatal(err)
		}
		tr := newTransfer("saver")
		if err := s.Create(context.Background(), tr); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var (
			wg     sync.WaitGroup
			purged int
			perr   error
		)
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			purged, perr = s.Purge(context.Background(), at.Add(time.Hour), 0)
		})
		var lat []time.Duration
	saving:
		for {
			select {
			case <-done:
				break saving
			default:
			}
			start := time.Now()
			tr.UpdatedAt = start
			if err := s.Update(context.Background(), tr); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		wg.Wait()
		b.StopTimer()
		if perr != nil || purged != n-n/100 {
			b.Fatalf("Purge = %d, %v; want %d", purged, perr, n-n/100)
		}
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-save-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-save-ms")
			b.ReportMetric(float64(len(lat)), "saves")
		}
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkSignalled is the engine's poll for signals (every two poll
// intervals) on a replica that owns 10,000 open transfers, none of them
// signalled: parked transfers waiting for their clients.
func BenchmarkSignalled(b *testing.B) {
	s := ownedParked(b)
	for b.Loop() {
		if ids, err := s.Signalled(context.Background(), "A"); err != nil || len(ids) != 0 {
			b.Fatal(ids, err)
		}
	}
}

// BenchmarkOwned is the engine's look for orphans (every minute) on the
// same replica: the ids of the 10,000 open transfers it owns, each of
// which the engine then finds among those it drives.
func BenchmarkOwned(b *testing.B) {
	s := ownedParked(b)
	for b.Loop() {
		if ids, err := s.Owned(context.Background(), "A"); err != nil || len(ids) != 10_000 {
			b.Fatal(len(ids), err)
		}
	}
}

// ownedParked opens a store holding 10,000 open transfers owned by A.
func ownedParked(b *testing.B) *sqlite.Store {
	dir := b.TempDir()
	fill(b, dir, 10_000, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	db := rawDB(b, dir)
	if _, err := db.Exec(`UPDATE transfers SET owner = 'A', open = 1`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return open(b, dir)
}

// BenchmarkStreamStart is where an event stream opened "from now" starts,
// with 100,000 events of the tenant stored (ten for each of 10,000
// transfers): LastEventPos, one index entry, against what the stream did
// before, reading the tenant's outbox to its end 200 events at a time,
// every snapshot decoded.
func BenchmarkStreamStart(b *testing.B) {
	dir := b.TempDir()
	fill(b, dir, 10_000, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	db := rawDB(b, dir)
	if _, err := db.Exec(`INSERT INTO events (id, tenant, transfer_id, seq, type, at, snapshot)
		SELECT 'evt_' || t.id || '_' || s.n, t.tenant, t.id, s.n, 'transfer.state_changed', t.updated_at, t.record
		FROM transfers t, (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10) SELECT n FROM s) s
		ORDER BY t.id, s.n`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	s := open(b, dir)
	ctx := context.Background()
	want, err := s.LastEventPos(ctx, orchestrator.EventFilter{Tenant: "acme"})
	if err != nil || want != 100_000 {
		b.Fatalf("LastEventPos = %d, %v; want 100000", want, err)
	}
	b.Run("last event", func(b *testing.B) {
		for b.Loop() {
			if pos, err := s.LastEventPos(ctx, orchestrator.EventFilter{Tenant: "acme"}); err != nil || pos != want {
				b.Fatal(pos, err)
			}
		}
	})
	b.Run("read to the end", func(b *testing.B) {
		for b.Loop() {
			f := orchestrator.EventFilter{Tenant: "acme", Limit: 200}
			for {
				evs, err := s.Events(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) > 0 {
					f.After = evs[len(evs)-1].Pos
				}
				if len(evs) < f.Limit {
					break
				}
			}
			if f.After != want {
				b.Fatal(f.After)
			}
		}
	})
}
