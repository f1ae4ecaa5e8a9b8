package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
)

// growthStore is what the store scenario needs of a store.
type growthStore interface {
	orchestrator.Store
}

// storeScenario fills each store to every size with transfers written
// through the store package itself (as transferd would save them, only
// without the engine in front), then times the lists the API offers,
// gets, creates, and a purge of a tenth of the rows while saves go on.
func storeScenario(ctx context.Context, o options, dir string, out io.Writer) error {
	fmt.Fprintf(out, "\n## Store growth (lists of the API: limit 50; times are wall clock per call)\n\n")
	tw := table(out)
	fmt.Fprintln(tw, "store\tstored\tfill/s\tquery\tp50 ms\tp99 ms\t")
	type opened struct {
		name  string
		open  func(int) (growthStore, func(), error)
		reset bool
	}
	stores := []opened{{name: "sqlite", open: func(n int) (growthStore, func(), error) {
		s, err := sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("store-%d", n)))
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(); _ = os.RemoveAll(filepath.Join(dir, fmt.Sprintf("store-%d", n))) }, nil
	}}}
	if o.noSQLite {
		stores = nil
	}
	if o.pg != "" {
		stores = append(stores, opened{name: "postgres", open: func(n int) (growthStore, func(), error) {
			// A database of its own for each point, dropped after it.
			dbURL, drop, err := freshDatabase(ctx, o.pg, fmt.Sprintf("transferbench_store_%d", n))
			if err != nil {
				return nil, nil, err
			}
			s, err := postgres.Open(ctx, dbURL)
			if err != nil {
				drop()
				return nil, nil, err
			}
			return analyzedStore{Store: s, url: dbURL}, func() { s.Close(); drop() }, nil
		}})
	}
	for _, st := range stores {
		for _, n := range o.storeSizes {
			s, closeFn, err := st.open(n)
			if err != nil {
				return err
			}
			err = growthPoint(ctx, st.name, s, n, tw)
			closeFn()
			if err != nil {
				return err
			}
			_ = tw.Flush()
		}
	}
	return tw.Flush()
}

func growthPoint(ctx context.Context, name string, s growthStore, n int, tw io.Writer) error {
	now := time.Now().UTC()
	ids := make([]string, n)
	var opens []*orchestrator.Transfer
	// A store that imports (both do) holds the webhook history too.
	var hooks *hookFill
	if ws, ok := s.(webhooks.Store); ok {
		if _, imports := s.(importer); imports {
			hooks = newHookFill(ws, n, now)
		}
	}
	start := time.Now()
	if err := fill(ctx, s, n, now, func(i int, t *orchestrator.Transfer) error {
		ids[i] = t.ID
		if t.Open() {
			opens = append(opens, t)
		}
		if hooks != nil {
			return hooks.add(ctx, i, t)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("filling %s: %w", name, err)
	}
	if hooks != nil {
		if err := hooks.finish(ctx); err != nil {
			return fmt.Errorf("filling %s: %w", name, err)
		}
	}
	if a, ok := s.(analyzedStore); ok {
		if err := a.analyze(ctx); err != nil {
			return fmt.Errorf("filling %s: %w", name, err)
		}
	}
	fill := float64(n) / time.Since(start).Seconds()
	row := func(q string, lat []time.Duration) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t\n", name, n, fill, q, ms(percentile(lat, 50)), ms(percentile(lat, 99)))
		flush(tw)
	}
	timeIt := func(times int, f func(i int) error) ([]time.Duration, error) {
		lat := make([]time.Duration, 0, times)
		for i := range times {
			t0 := time.Now()
			if err := f(i); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
		}
		return lat, nil
	}
	// A cursor from the middle of the table.
	mid := ids[n/2]
	lists := []struct {
		q string
		f orchestrator.ListFilter
	}{
		{"list (newest)", orchestrator.ListFilter{}},
		{"list state=consulting", orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateConsulting}}},
		{"list state=completed", orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateCompleted}}},
		{"list state=failed (none)", orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateFailed}}},
		{"list every open state", orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding,
			orchestrator.StateDialing, orchestrator.StateConsulting, orchestrator.StateCompleting, orchestrator.StateRecovering}}},
		{"list provider=bandwidth", orchestrator.ListFilter{Provider: "bandwidth"}},
		{"list provider+state=consulting", orchestrator.ListFilter{Provider: "netsapiens", States: []orchestrator.State{orchestrator.StateConsulting}}},
		{"list cursor (middle)", orchestrator.ListFilter{After: mid}},
		{"list state=consulting cursor", orchestrator.ListFilter{After: mid, States: []orchestrator.State{orchestrator.StateConsulting}}},
	}
	for _, l := range lists {
		f := l.f
		// The API's lists are always scoped to the key's tenant (the
		// engine sets it), and the stores' indexes lead with it.
		f.Tenant = orchestrator.DefaultTenant
		f.Limit = 50
		lat, err := timeIt(100, func(int) error { _, _, err := s.List(ctx, f); return err })
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, l.q, err)
		}
		row(l.q, lat)
	}
	if hooks != nil {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\twebhook history: %d deliveries (%d dead)\t\t\t\n", name, n, fill, hooks.made, hooks.dead)
		for _, hq := range hooks.hookQueries() {
			lat, err := timeIt(100, func(int) error { return hq.f(ctx) })
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, hq.q, err)
			}
			row(hq.q, lat)
		}
	}
	rnd := rand.New(rand.NewPCG(1, uint64(n)))
	lat, err := timeIt(1000, func(int) error { _, err := s.Get(ctx, ids[rnd.IntN(n)]); return err })
	if err != nil {
		return fmt.Errorf("%s get: %w", name, err)
	}
	row("get", lat)
	lat, err = timeIt(500, func(i int) error { return s.Create(ctx, newBenchTransfer(i, time.Now().UTC())) })
	if err != nil {
		return fmt.Errorf("%s create: %w", name, err)
	}
	row("create", lat)

	type purge struct {
		what  string
		purge func() (int, error)
	}
	purges := []purge{{"rows", func() (int, error) { return s.Purge(ctx, now.Add(-retention), 0) }}}
	if hooks != nil {
		purges = append(purges, purge{"deliveries", func() (int, error) { return hooks.s.PurgeDeliveries(ctx, now.Add(-retention), 0) }})
	}
	for _, p := range purges {
		purged, took, sv, err := whileSaving(ctx, s, opens, p.purge)
		if err != nil {
			return fmt.Errorf("%s purge %s: %w", name, p.what, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\tpurge %d %s: %s s\t\t\t\n", name, n, fill, purged, p.what, fmt.Sprintf("%.2f", took.Seconds()))
		row(fmt.Sprintf("save during purge (%d, max %s ms)", len(sv), ms(percentile(sv, 100))), sv)
	}
	return nil
}

// whileSaving runs purge while saves of open transfers go on, one after
// another, and returns what purge returned, how long it took, and how
// long each save took: the longest is what a transfer would wait.
func whileSaving(ctx context.Context, s growthStore, opens []*orchestrator.Transfer, purge func() (int, error)) (int, time.Duration, []time.Duration, error) {
	stop := make(chan struct{})
	saves := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				saves <- lat
				return
			default:
			}
			t := opens[i%len(opens)]
			t.UpdatedAt = time.Now().UTC()
			t0 := time.Now()
			if err := s.Update(ctx, t); err != nil {
				fmt.Fprintf(os.Stderr, "  save during purge: %v\n", err)
				saves <- lat
				<-stop
				return
			}
			lat = append(lat, time.Since(t0))
		}
	}()
	t0 := time.Now()
	purged, err := purge()
	took := time.Since(t0)
	close(stop)
	return purged, took, <-saves, err
}

// analyzedStore is a PostgreSQL store whose tables the scenario analyzes
// once they are filled, as autovacuum analyzes a table that grew by a
// tenth: a store that grew to its size over weeks has statistics, and one
// filled a moment ago may have none yet, so that the planner guesses (a
// transfer's events were once read through the tenant's, 77 ms at 20,000
// transfers, on a table not analyzed yet).
type analyzedStore struct {
	*postgres.Store
	url string
}

func (a analyzedStore) analyze(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, a.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `ANALYZE`)
	return err
}

// importer is a store that writes a batch of finished transfers in one
// transaction (sqlite.Store.Import).
type importer interface {
	Import(ctx context.Context, ts []*orchestrator.Transfer) error
}

// fillBatch is the transfers of one Import: a few thousand per commit.
const fillBatch = 2000

// fill stores n generated transfers (benchTransfer) and calls seen with
// each (by its index), its Outbox still on it, once stored; an error of
// seen stops the fill. Those of an importer come in the order it wrote
// them. A store that imports takes them in
// batches, generated on another goroutine meanwhile; another is filled
// through Create, 16 at a time, as transferd would create them.
func fill(ctx context.Context, s growthStore, n int, now time.Time, seen func(int, *orchestrator.Transfer) error) error {
	if imp, ok := s.(importer); ok {
		// Oldest first, as they were created: the file's layout (the
		// oldest rows, the ones purged, at its start) is a real one's.
		// Newest first put the purged rows at the end of the file, where
		// every page the reclaim gives back was a free one that SQLite
		// looks for through the whole free list (183 pages a second at
		// 1M stored).
		type batch struct {
			lo int
			ts []*orchestrator.Transfer
		}
		batches := make(chan batch, 2)
		go func() {
			defer close(batches)
			for hi := n; hi > 0 && ctx.Err() == nil; hi -= fillBatch {
				b := batch{lo: max(hi-fillBatch, 0)}
				for i := hi - 1; i >= b.lo; i-- {
					b.ts = append(b.ts, benchTransfer(i, n, now))
				}
				batches <- b
			}
		}()
		for b := range batches {
			if err := imp.Import(ctx, b.ts); err != nil {
				for range batches { // let the generator end
				}
				return err
			}
			for k, t := range b.ts {
				if err := seen(b.lo+len(b.ts)-1-k, t); err != nil {
					for range batches {
					}
					return err
				}
				t.Outbox = nil
			}
		}
		return ctx.Err()
	}
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := benchTransfer(i, n, now)
				if err := s.Create(ctx, t); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				mu.Lock()
				err := seen(i, t)
				mu.Unlock()
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				t.Outbox = nil
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// freshDatabase creates the database name on the server of base (dropping
// one left by an earlier run) and returns its URL and a func that drops it.
func freshDatabase(ctx context.Context, base, name string) (string, func(), error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("postgres URL: %w", err)
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{`DROP DATABASE IF EXISTS ` + ident, `CREATE DATABASE ` + ident} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(ctx)
			return "", nil, fmt.Errorf("postgres: %s: %w", q, err)
		}
	}
	u.Path = "/" + name
	return u.String(), func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+ident)
		conn.Close(context.WithoutCancel(ctx))
	}, nil
}

// flush writes out what the table holds so far, so that a long point's
// rows are seen as they come.
func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
}
