package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// parkedScenario parks N manual transfers whose targets answered (or,
// with -parked-ring, ring until the consult timeout of an hour), then
// reads transferd's memory above its idle baseline and its CPU over an
// idle window in which nothing happens but the watchers' readings of the
// PBX; a quiet pass slows the watchers to an hour, so that what parking
// costs beyond watching is measured apart.
func parkedScenario(ctx context.Context, o options, b binaries, dir string, out io.Writer) error {
	logw, err := logFile(dir, "parked")
	if err != nil {
		return err
	}
	defer logw.Close()
	what := "targets answered: consults in conversation, waiting for the client to complete"
	if o.parkedRing {
		what = "targets ring for an hour"
	}
	fmt.Fprintf(out, "\n## Parked manual transfers, consulting (%s; %d per NetSapiens domain; idle window %s)%s\n\n", what, o.perDomain, o.idleWindow, envNote(o.transferdEnv))
	fmt.Fprintln(out, "watching: shipped = POLL_INTERVAL 250ms / POLL_MAX_INTERVAL 2s (the watchers' readings of the PBX included);")
	fmt.Fprintln(out, "quiet = both 1h, so that the idle window holds no reading: what parked transfers cost beyond watching.")
	fmt.Fprintln(out)
	tw := table(out)
	if o.parkedLimit > 0 {
		fmt.Fprintf(out, "transferd runs in a memory cgroup limited to %d MiB (as a container with that limit).\n\n", o.parkedLimit>>20)
	}
	fmt.Fprintln(out, "heap / goal: the Go heap's allocated bytes and the collector's next goal, from transferd's /metrics as the RSS is read.")
	fmt.Fprintln(out)
	fmt.Fprintln(tw, "parked\twatching\tcreate/s\tRSS idle MiB\tRSS parked MiB\tKB each\theap / goal MiB\tpeak RSS MiB\tcgroup peak MiB\tOOM kills\tidle CPU-s/min\tprovider reads/min\tpbxsim CPU-s/min\tpbxsim RSS MiB\t")
	for _, n := range o.parked {
		for _, quiet := range o.parkedWatch {
			if err := parkedPoint(ctx, o, b, dir, n, quiet, logw, tw); err != nil {
				return err
			}
			_ = tw.Flush()
		}
	}
	return tw.Flush()
}

func parkedPoint(ctx context.Context, o options, b binaries, dir string, n int, quiet bool, logw io.Writer, tw io.Writer) error {
	so := simOptions{targetMode: "answer"}
	if o.parkedRing {
		so = simOptions{targetMode: "never", ringTimeout: 2 * time.Hour}
	}
	sim, simURL, err := startSim(b, so, logw)
	if err != nil {
		return err
	}
	defer sim.stop(5 * time.Second)
	watching := "shipped"
	extra := []string{"TRANSFERD_MAX_CONSULT_TIMEOUT=2h"}
	if quiet {
		// A transfer that needs a reading newer than its last action
		// still kicks its watcher; only the periodic readings stop.
		watching = "quiet"
		extra = append(extra, "TRANSFERD_POLL_INTERVAL=1h", "TRANSFERD_POLL_MAX_INTERVAL=1h")
	}
	var cg *memCgroup
	if o.parkedLimit > 0 {
		if cg, err = newMemCgroup(fmt.Sprintf("transferbench-%d", os.Getpid()), o.parkedLimit); err != nil {
			return err
		}
		defer func() { _ = cg.remove() }()
	}
	profile := heapProfilePath(o.heapprofile, n, watching)
	if profile != "" {
		extra = append(extra, "TRANSFERD_HEAPPROFILE="+profile)
		// A profile left by an earlier run must not pass for this one's.
		if err := os.Remove(profile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	d, api, err := startDaemon(b, o, daemonOptions{sim: simURL, dataDir: filepath.Join(dir, fmt.Sprintf("data-parked-%d-%s", n, watching)), apiKey: o.apiKey,
		extra: extra, cgroup: cg}, logw)
	if err != nil {
		return err
	}
	// Parked transfers are not given back on exit: the process and its
	// data are thrown away, so shutting down gracefully would only time
	// the compensation of n consults. (Deferred calls run last first: the
	// process is gone before its cgroup is removed.)
	defer func() { _ = d.cmd.Process.Kill(); <-d.done }()
	idle := d.mem("VmRSS")

	var next atomic.Int64
	var failed atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				domain := fmt.Sprintf("K%d", i/int64(o.perDomain))
				user := fmt.Sprint(2000 + i%int64(o.perDomain))
				err := call(ctx, http.MethodPost, simURL+"/sim/netsapiens/calls",
					map[string]string{"domain": domain, "user": user, "from": "15555555555", "to": "11111111111"}, http.StatusCreated, nil)
				var t transferResp
				if err == nil {
					t, err = o.createTransfer(ctx, api, map[string]any{"provider": "netsapiens", "completion": "manual",
						"consult_timeout": "3600s", "call": map[string]string{"domain": domain, "user": user}, "target": "1010"}, "10")
				}
				if err == nil && t.State != "consulting" {
					err = fmt.Errorf("transfer %s is %s, want consulting", t.ID, t.State)
				}
				if err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	if first != nil {
		fmt.Fprintf(os.Stderr, "  parked %d: %d failed, first: %v\n", n, failed.Load(), first)
	}
	// Let the creations' garbage be collected and every watcher settle
	// into its steady interval before the idle window.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	s0, err := stats(ctx, simURL)
	if err != nil {
		return err
	}
	c0, sc0, t0 := d.cpu(), sim.cpu(), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.idleWindow):
	}
	el := time.Since(t0)
	s1, err := stats(ctx, simURL)
	if err != nil {
		return err
	}
	perMin := func(v time.Duration) string {
		return fmt.Sprintf("%.2f", v.Seconds()*time.Minute.Seconds()/el.Seconds())
	}
	parked := d.mem("VmRSS")
	heap := "-"
	if alloc, goal, err := heapOf(ctx, api, o.auth()); err == nil {
		heap = fmt.Sprintf("%s / %s", mib(alloc), mib(goal))
	} else {
		fmt.Fprintf(os.Stderr, "  parked %d: transferd's heap not read: %v\n", n, err)
	}
	ok := n - int(failed.Load())
	if d.exited() {
		ok = 0 // killed (out of memory?): nothing is parked any more
	}
	cgPeak, ooms := "-", "-"
	if cg != nil {
		cgPeak, ooms = mib(cg.peak()), fmt.Sprint(cg.ooms())
	}
	fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t\n", ok, watching, float64(n)/created.Seconds(), mib(idle), mib(parked),
		float64(parked-idle)/1024/float64(max(ok, 1)), heap, mib(d.mem("VmHWM")), cgPeak, ooms, perMin(d.cpu()-c0),
		float64(s1.requests()-s0.requests())*time.Minute.Seconds()/el.Seconds(), perMin(sim.cpu()-sc0), mib(sim.mem("VmRSS")))
	if profile != "" && !d.exited() {
		// After the readings above: the profile's collection must not
		// change what they measure.
		if err := takeHeapProfile(ctx, d, profile); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  transferd's heap with %d parked (%s) written to %s\n", ok, watching, profile)
	}
	fmt.Fprintf(os.Stderr, "  parked %d (%s) done\n", n, watching)
	return nil
}

// heapProfilePath names the heap profile of the parked point of n
// transfers with the given watching: base with the point inserted before
// its extension, or "" when the run takes none.
func heapProfilePath(base string, n int, watching string) string {
	if base == "" {
		return ""
	}
	ext := filepath.Ext(base)
	return fmt.Sprintf("%s-%d-%s%s", strings.TrimSuffix(base, ext), n, watching, ext)
}

// takeHeapProfile asks the profiling build of transferd for its live heap
// (SIGUSR1) and waits until the profile is in place: transferd renames it
// there once written whole.
func takeHeapProfile(ctx context.Context, d *proc, path string) error {
	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("transferd wrote no heap profile to %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// heapOf reads the Go heap's allocated bytes and the collector's next goal
// from transferd's /metrics (client_golang's Go collector): with the RSS,
// they tell the parked transfers' live memory from the collector's
// headroom and what the runtime has not given back yet.
func heapOf(ctx context.Context, api string, auth []string) (alloc, goal int64, err error) {
	b, err := send(ctx, http.MethodGet, api+"/metrics", nil, http.StatusOK, auth...)
	if err != nil {
		return 0, 0, err
	}
	return parseHeap(bytes.NewReader(b))
}

// parseHeap finds go_memstats_heap_alloc_bytes and
// go_memstats_next_gc_bytes in a Prometheus text exposition.
func parseHeap(r io.Reader) (alloc, goal int64, err error) {
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		var dst *int64
		switch name {
		case "go_memstats_heap_alloc_bytes":
			dst = &alloc
		case "go_memstats_next_gc_bytes":
			dst = &goal
		}
		if !ok || dst == nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		*dst = int64(v)
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, errors.New("/metrics has no go_memstats_heap_alloc_bytes or go_memstats_next_gc_bytes")
	}
	return alloc, goal, nil
}
