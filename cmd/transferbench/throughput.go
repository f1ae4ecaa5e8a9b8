package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is one throughput point.
type result struct {
	store, client string
	c, n, errs    int
	firstErr      error
	elapsed       time.Duration
	lat           []time.Duration
	cpu, simCPU   time.Duration // of the process under test, of pbxsim
	dbCPU         time.Duration // PostgreSQL's processes, when it is the store
	sim           simStats      // pbxsim's counters over the point
	delivered     int64         // webhook deliveries received over the point (-webhooks ok, tls)
	settled       time.Duration // how long after the last transfer they kept coming
	naive         string        // the naive client's pace: "back to back" or its gaps
}

func (r *result) per(d time.Duration) string {
	if r.n == 0 {
		return "-"
	}
	return ms(d / time.Duration(r.n))
}

func (r *result) perN(v int64) string {
	if r.n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(v)/float64(r.n))
}

// drive runs one transfer after another on c workers for d and times
// each. one gets a sequence number unique in the run.
func drive(ctx context.Context, c int, d time.Duration, seq *atomic.Int64, one func(ctx context.Context, seq int64) (time.Duration, error)) (lat []time.Duration, errs int, first error, elapsed time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				l, err := one(ctx, seq.Add(1))
				mu.Lock()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				} else {
					lat = append(lat, l)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, errs, first, time.Since(start)
}

// measure runs drive between two readings of every process's CPU and of
// pbxsim's counters; settle, when set, runs after drive and before the
// second reading (the wait for the point's webhook deliveries).
func measure(ctx context.Context, r *result, d time.Duration, under, sim *proc, simURL string, pg bool, seq *atomic.Int64,
	one func(ctx context.Context, seq int64) (time.Duration, error), settle func(context.Context)) error {
	s0, err := stats(ctx, simURL)
	if err != nil {
		return err
	}
	c0, sc0 := under.cpu(), sim.cpu()
	var db0 time.Duration
	if pg {
		db0 = cpuOfCommand("postgres")
	}
	r.lat, r.errs, r.firstErr, r.elapsed = drive(ctx, r.c, d, seq, one)
	r.n = len(r.lat)
	if settle != nil {
		start := time.Now()
		settle(ctx)
		r.settled = time.Since(start)
	}
	r.cpu, r.simCPU = under.cpu()-c0, sim.cpu()-sc0
	if pg {
		r.dbCPU = cpuOfCommand("postgres") - db0
	}
	s1, err := stats(ctx, simURL)
	if err != nil {
		return err
	}
	r.sim = simStats{Connections: s1.Connections - s0.Connections, NetSapiensRequests: s1.NetSapiensRequests - s0.NetSapiensRequests,
		BandwidthRequests: s1.BandwidthRequests - s0.BandwidthRequests}
	return nil
}

// transferResp is what the benchmark reads of a transfer.
type transferResp struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (o *options) auth() []string {
	if o.apiKey == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + o.apiKey}
}

// createTransfer posts req to transferd, waiting up to wait for it to
// settle, and returns it.
func (o *options) createTransfer(ctx context.Context, api string, req any, wait string) (transferResp, error) {
	var t transferResp
	hdr := append([]string{"Prefer", "wait=" + wait}, o.auth()...)
	err := call(ctx, http.MethodPost, api+"/v1/transfers", req, http.StatusCreated, &t, hdr...)
	if err != nil && wait == "0" {
		err = call(ctx, http.MethodPost, api+"/v1/transfers", req, http.StatusAccepted, &t, o.auth()...)
	}
	return t, err
}

// nsTransfer places a call in a domain of its own (so that listings stay
// the size of one customer's PBX) and has transferd move it to 1010.
func (o *options) nsTransfer(api, sim string) func(ctx context.Context, seq int64) (time.Duration, error) {
	return func(ctx context.Context, seq int64) (time.Duration, error) {
		domain := fmt.Sprintf("B%d", seq)
		var call1 struct {
			SessionID string `json:"call-session-id"`
		}
		if err := call(ctx, http.MethodPost, sim+"/sim/netsapiens/calls",
			map[string]string{"domain": domain, "user": "1000", "from": "15555555555", "to": "11111111111"}, http.StatusCreated, &call1); err != nil {
			return 0, err
		}
		start := time.Now()
		t, err := o.createTransfer(ctx, api, map[string]any{"provider": "netsapiens",
			"call": map[string]string{"domain": domain, "user": "1000"}, "target": "1010"}, "30")
		lat := time.Since(start)
		if err != nil {
			return 0, err
		}
		if t.State != "completed" {
			return 0, fmt.Errorf("transfer %s ended %s", t.ID, t.State)
		}
		// Caller and target finish their conversation, so that the PBX
		// holds as many live calls as a real one would.
		_ = call(ctx, http.MethodPost, sim+"/sim/netsapiens/calls/"+call1.SessionID+"/hangup",
			map[string]string{"party": "orig"}, http.StatusNoContent, nil)
		return lat, nil
	}
}

// bwTransfer places a caller talking to an agent and has transferd
// connect the caller to a target (Catapult attended, completion auto).
func (o *options) bwTransfer(api, sim string) func(ctx context.Context, seq int64) (time.Duration, error) {
	return func(ctx context.Context, seq int64) (time.Duration, error) {
		var calls struct {
			Call      struct{ ID string } `json:"call"`
			AgentCall struct{ ID string } `json:"agent_call"`
		}
		if err := call(ctx, http.MethodPost, sim+"/sim/bandwidth/calls",
			map[string]string{"from": fmt.Sprintf("+1555%07d", seq%10_000_000), "to": "+15555550100", "agent": "+15555550111"},
			http.StatusCreated, &calls); err != nil {
			return 0, err
		}
		start := time.Now()
		t, err := o.createTransfer(ctx, api, map[string]any{"provider": "bandwidth", "mode": "attended",
			"call": map[string]string{"call_id": calls.Call.ID, "agent_call_id": calls.AgentCall.ID}, "target": "+15555550222"}, "30")
		lat := time.Since(start)
		if err != nil {
			return 0, err
		}
		if t.State != "completed" {
			return 0, fmt.Errorf("transfer %s ended %s", t.ID, t.State)
		}
		_ = call(ctx, http.MethodPost, sim+"/sim/bandwidth/calls/"+calls.Call.ID+"/hangup", nil, http.StatusNoContent, nil)
		return lat, nil
	}
}

// throughput runs every (store, provider, concurrency) point, then the
// naive client at every concurrency against the same simulator.
func throughput(ctx context.Context, o options, b binaries, dir string, out io.Writer) error {
	logw, err := logFile(dir, "throughput")
	if err != nil {
		return err
	}
	defer logw.Close()
	sim, simURL, err := startSim(b, simOptions{targetMode: "answer"}, logw)
	if err != nil {
		return err
	}
	defer sim.stop(5 * time.Second)
	stores := []string{"sqlite"}
	if o.pg != "" {
		stores = append(stores, "postgres")
	}
	if o.floor {
		stores = append(stores, "memory")
	}
	var seq atomic.Int64
	var results []*result
	var rss, profiles, rowNotes []string
	for _, store := range stores {
		// With every event delivered, PostgreSQL's count of the writes of
		// the deliveries' rows over the store's points.
		countRows := store == "postgres" && o.hooks != nil
		var rows0 rowWrites
		if countRows {
			if rows0, err = readRowWrites(ctx, o.pg); err != nil {
				return err
			}
		}
		do := daemonOptions{sim: simURL, dataDir: filepath.Join(dir, "data-throughput"), apiKey: o.apiKey}
		if env, path := profileEnv(o, dir, store); path != "" {
			do.extra = append(do.extra, env...)
			profiles = append(profiles, path)
		}
		if store == "postgres" {
			do.databaseURL = o.pg
		}
		db := b
		if store == "memory" {
			db.transferd = b.floor
		}
		d, api, err := startDaemon(db, o, do, logw)
		if err != nil {
			return err
		}
		for _, prov := range o.providers {
			one := o.nsTransfer(api, simURL)
			if prov == "bandwidth" {
				one = o.bwTransfer(api, simURL)
			}
			// Warm up: connections, watchers, the store's caches.
			_, _, _, _ = drive(ctx, 4, 300*time.Millisecond, &seq, one)
			if o.hooks != nil {
				o.hooks.quiet(ctx) // the warm-up's deliveries are not the point's
			}
			for _, c := range o.concurrency {
				r := &result{store: store, client: "transferd " + prov, c: c}
				var hooks0 int64
				var settle func(context.Context)
				if o.hooks != nil {
					hooks0 = o.hooks.received.Load()
					settle = o.hooks.quiet
				}
				if err := measure(ctx, r, o.duration, d, sim, simURL, store == "postgres", &seq, one, settle); err != nil {
					d.stop(30 * time.Second)
					return err
				}
				if o.hooks != nil {
					r.delivered = o.hooks.received.Load() - hooks0
				}
				results = append(results, r)
				fmt.Fprintf(os.Stderr, "  %s %s c=%d: %d transfers\n", store, r.client, c, r.n)
			}
		}
		rss = append(rss, fmt.Sprintf("transferd (%s) peak RSS %s MiB", store, mib(d.mem("VmHWM"))))
		d.stop(30 * time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if countRows {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			rows, err := readRowWrites(wctx, o.pg)
			cancel()
			if err != nil {
				return err
			}
			rowNotes = append(rowNotes, fmt.Sprintf("%s: webhook_deliveries, every point and warm-up: %s", store, rows.since(rows0)))
		}
	}
	if o.cpuprofile != "" {
		if err := mergeProfiles(ctx, o.cpuprofile, profiles); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  transferd's CPU profile written to %s\n", o.cpuprofile)
	}
	naive, err := naiveResults(ctx, o, simURL, sim, &seq, logw)
	if err != nil {
		return err
	}
	results = append(results, naive...)
	rss = append(rss, fmt.Sprintf("pbxsim peak RSS %s MiB", mib(sim.mem("VmHWM"))))

	fmt.Fprintf(out, "\n## Throughput (%s per point; targets answer at once; POST with Prefer: wait until terminal)%s\n\n", o.duration, envNote(o.transferdEnv))
	tw := table(out)
	fmt.Fprintln(tw, "store\tclient\tc\ttransfers\ttransfers/s\tp50 ms\tp99 ms\tCPU ms/transfer\tpbxsim CPU ms/tr\tdb CPU ms/tr\treq/transfer\tnew conns/transfer\terrors\t")
	for _, r := range results {
		db := "-"
		if r.store == "postgres" {
			db = r.per(r.dbCPU)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", r.store, r.client, r.c, r.n,
			float64(r.n)/r.elapsed.Seconds(), ms(percentile(r.lat, 50)), ms(percentile(r.lat, 99)),
			r.per(r.cpu), r.per(r.simCPU), db, r.perN(r.sim.requests()), r.perN(r.sim.Connections), r.errs)
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.firstErr != nil {
			fmt.Fprintf(out, "first error of %s %s c=%d: %v\n", r.store, r.client, r.c, r.firstErr)
		}
	}
	if o.hooks != nil {
		// Deliveries lag behind their transfers under load: each point
		// waits after its last transfer until the receiver has had none
		// for a second, and the CPU above covers that wait, so that it is
		// what a transfer and all its deliveries cost.
		fmt.Fprintln(out, "\nwebhook deliveries of each point (every event; the CPU above includes the wait for them):")
		tw = table(out)
		fmt.Fprintln(tw, "store\tclient\tc\tdeliveries\tper transfer\tcame for s after the last transfer\t")
		for _, r := range results {
			if strings.HasPrefix(r.client, "transferd ") {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.1f\t\n", r.store, r.client, r.c, r.delivered, r.perN(r.delivered), (r.settled - quietFor).Seconds())
			}
		}
		_ = tw.Flush()
		for _, l := range rowNotes {
			fmt.Fprintln(out, l)
		}
	}
	fmt.Fprintln(out)
	for _, l := range rss {
		fmt.Fprintln(out, l)
	}
	fmt.Fprintln(out, "\ntransferd ÷ naive (NetSapiens, same simulator, same run):")
	tw = table(out)
	fmt.Fprintln(tw, "store\tc\tnaive\tCPU per transfer\ttransfers/s\t")
	for _, r := range results {
		if r.client != "transferd netsapiens" {
			continue
		}
		for _, nv := range naive {
			if nv.c == r.c && nv.n > 0 && r.n > 0 {
				cpu := float64(r.cpu) / float64(r.n) / (float64(nv.cpu) / float64(nv.n))
				tps := (float64(r.n) / r.elapsed.Seconds()) / (float64(nv.n) / nv.elapsed.Seconds())
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f×\t%.2f×\t\n", r.store, r.c, nv.naive, cpu, tps)
			}
		}
	}
	return tw.Flush()
}
