package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// parkedScenario parks N manual transfers whose targets ring until the
// consult timeout (an hour), then reads transferd's memory above its idle
// baseline and its CPU over an idle window in which nothing happens but
// the watchers' readings of the PBX.
func parkedScenario(ctx context.Context, o options, b binaries, dir string, out io.Writer) error {
	logw, err := logFile(dir, "parked")
	if err != nil {
		return err
	}
	defer logw.Close()
	fmt.Fprintf(out, "\n## Parked manual transfers, consulting (targets ring for an hour; %d per NetSapiens domain; idle window %s)\n\n", o.perDomain, o.idleWindow)
	tw := table(out)
	fmt.Fprintln(tw, "parked\tcreate/s\tRSS idle MiB\tRSS parked MiB\tKB each\tpeak RSS MiB\tidle CPU-s/min\tprovider reads/min\tpbxsim CPU-s/min\tpbxsim RSS MiB\t")
	for _, n := range o.parked {
		if err := parkedPoint(ctx, o, b, dir, n, logw, tw); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func parkedPoint(ctx context.Context, o options, b binaries, dir string, n int, logw io.Writer, tw io.Writer) error {
	sim, simURL, err := startSim(b, simOptions{targetMode: "never", ringTimeout: 2 * time.Hour}, logw)
	if err != nil {
		return err
	}
	defer sim.stop(5 * time.Second)
	d, api, err := startDaemon(b, daemonOptions{sim: simURL, dataDir: filepath.Join(dir, fmt.Sprintf("data-parked-%d", n)), apiKey: o.apiKey,
		extra: []string{"TRANSFERD_MAX_CONSULT_TIMEOUT=2h"}}, logw)
	if err != nil {
		return err
	}
	// Parked transfers are not given back on exit: the process and its
	// data are thrown away, so shutting down gracefully would only time
	// the compensation of n consults.
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
	ok := n - int(failed.Load())
	fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%.1f\t%s\t%s\t%.0f\t%s\t%s\t\n", ok, float64(n)/created.Seconds(), mib(idle), mib(parked),
		float64(parked-idle)/1024/float64(max(ok, 1)), mib(d.mem("VmHWM")), perMin(d.cpu()-c0),
		float64(s1.requests()-s0.requests())*time.Minute.Seconds()/el.Seconds(), perMin(sim.cpu()-sc0), mib(sim.mem("VmRSS")))
	fmt.Fprintf(os.Stderr, "  parked %d done\n", n)
	return nil
}
