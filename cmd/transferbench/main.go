// Command transferbench measures transferd end to end: it builds the real
// transferd and pbxsim binaries, starts them as separate processes and
// drives transfers through transferd's HTTP API, reading each process's
// CPU time and peak memory from /proc. In the same run it drives a naive
// straight-line client of the NetSapiens guide (its five requests, no
// store, no safety) against the same simulator, for comparison. Further
// scenarios park consulting transfers (memory and idle CPU) and grow the
// stores to 100k and 1M transfers with their webhook deliveries (list,
// get, create, purge).
//
// Run it from the repository (Linux only: it reads /proc):
//
//	go run ./cmd/transferbench                        # default scenarios, a few minutes on 2 cores
//	go run ./cmd/transferbench -pg postgres://…       # PostgreSQL too
//	go run ./cmd/transferbench -scenarios parked -parked 10000,50000
//	go run ./cmd/transferbench -scenarios store -store-sizes 100000,1000000
//	go run ./cmd/transferbench -scenarios events     # answer→join latency, requests per transfer
//	go run ./cmd/transferbench -scenarios throughput -floor   # and transferd with its store in memory
//	go run ./cmd/transferbench -scenarios throughput -cpuprofile cpu.pprof   # transferd's CPU profile of the run
//	go run ./cmd/transferbench -scenarios parked -heapprofile heap.pprof     # what transferd holds for its parked transfers
//	go run ./cmd/transferbench -scenarios throughput -pgo cpu.pprof          # transferd built with that profile (PGO)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "transferbench:", err)
		os.Exit(1)
	}
}

type options struct {
	scenarios    map[string]bool
	concurrency  []int
	providers    []string
	duration     time.Duration
	pg           string
	apiKey       string
	parked       []int
	parkedRing   bool
	parkedWatch  []bool // per pass: quiet
	perDomain    int
	parkedLimit  int64 // bytes; 0 = transferd runs without a memory cgroup
	idleWindow   time.Duration
	storeSizes   []int
	noSQLite     bool // store scenario: PostgreSQL only
	keepLogs     bool
	floor        bool
	naiveGaps    []time.Duration
	transferdEnv []string
	pgo          string // transferd's go build -pgo
	cpuprofile   string // write the throughput daemons' merged CPU profile here
	heapprofile  string // write each parked point's live heap here (one file per point)
	events       eventsOptions
	hooks        *webhookReceiver // -webhooks ok or tls
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("transferbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenarios", "throughput,parked,store", "comma-separated: throughput (transferd and the naive client under load), parked, store, events (answer-to-join latency, requests per transfer in one domain)")
	conc := fs.String("concurrency", "1,8,32,128", "transfers in flight at once, per throughput point")
	provs := fs.String("providers", "netsapiens,bandwidth", "providers the throughput scenario drives")
	dur := fs.Duration("duration", 4*time.Second, "length of each throughput point")
	pg := fs.String("pg", "", "PostgreSQL URL: the throughput and store scenarios run on it too (a throw-away database: tables are filled and purged)")
	apiKey := fs.String("api-key", "", "when transferd requires API keys: the value of TRANSFERD_API_KEYS, also sent as a bearer token")
	parked := fs.String("parked", "10000", "consulting transfers to park, per parked point")
	parkedRing := fs.Bool("parked-ring", false, "parked targets ring for an hour instead of answering (every watcher then reads at POLL_INTERVAL)")
	parkedWatch := fs.String("parked-watch", "shipped,quiet", "parked passes: shipped (transferd's poll intervals), quiet (watchers read only when a transfer asks)")
	perDomain := fs.Int("parked-per-domain", 100, "parked transfers per NetSapiens domain (one watcher reads each domain)")
	parkedLimit := fs.Int("parked-memory-limit", 0, "MiB: run transferd in a memory cgroup of this hard limit, as a container with a memory limit (Linux, root); 0 = none")
	idle := fs.Duration("idle-window", 20*time.Second, "how long idle CPU is measured with the transfers parked")
	sizes := fs.String("store-sizes", "100000", "stored transfers per store point (1000000 takes minutes to fill)")
	storePGOnly := fs.Bool("store-pg-only", false, "store scenario: PostgreSQL (-pg) only, not SQLite")
	evN := fs.Int("events-transfers", 200, "events scenario: auto transfers timed from answer to join, each in its own domain")
	evC := fs.Int("events-concurrency", 8, "events scenario: those transfers in flight at once")
	evMin := fs.Duration("events-min-answer", 100*time.Millisecond, "events scenario: shortest random answer delay")
	evMax := fs.Duration("events-max-answer", 2*time.Second, "events scenario: longest random answer delay")
	evOne := fs.Int("events-one-domain", 100, "events scenario: transfers consulting at once in one domain, for provider requests per transfer")
	var env multiFlag
	fs.Var(&env, "transferd-env", "NAME=value added to transferd's environment (repeatable), e.g. TRANSFERD_POLL_INTERVAL=100ms")
	floor := fs.Bool("floor", false, "throughput: also run transferd built with -tags storefloor, its store in memory (nothing durable), for what transferd costs beside its store")
	naiveGaps := fs.String("naive-gaps", "", "throughput: also run the naive client pausing this long before each request, per value (its process then goes idle between requests, as transferd's does while a lone transfer waits), e.g. 1ms,40ms")
	pgo := fs.String("pgo", "auto", "transferd's go build -pgo: auto (go build's default), off, or a profile's path (from -cpuprofile), to compare a profile-guided build with the shipped one")
	cpuprofile := fs.String("cpuprofile", "", "throughput: build transferd with -tags cpuprofile and write its CPU profiles of the run (SQLite, and PostgreSQL with -pg), merged, to this file (for go tool pprof, or -pgo)")
	heapprofile := fs.String("heapprofile", "", "parked: build transferd with -tags cpuprofile and write its live heap, once the transfers are parked, to this file, named apart per point (heap-10000-shipped.pprof from heap.pprof), for go tool pprof")
	webhooks := fs.String("webhooks", "", "transferd delivers every event as a webhook: ok (to a receiver in this process that answers 204 at once), tls (the same over HTTPS) or down (to an address that refuses connections); off by default")
	keep := fs.Bool("keep-logs", false, "keep the processes' logs and data in the temp dir and print its path")
	naiveWorker := fs.Bool("naive-worker", false, "internal: be the naive client's process")
	simURL := fs.String("sim", "", "internal: the simulator the naive worker talks to")
	workers := fs.Int("workers", 1, "internal: the naive worker's concurrency")
	gap := fs.Duration("gap", 0, "internal: the naive worker's pause before each request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *naiveWorker {
		return naiveServe(ctx, *simURL, *workers, *gap, stdin, stdout)
	}
	if runtime.GOOS != "linux" {
		return errors.New("transferbench reads /proc: it runs on Linux only")
	}
	o := options{scenarios: map[string]bool{}, duration: *dur, pg: *pg, apiKey: *apiKey, perDomain: max(*perDomain, 1),
		parkedLimit: int64(max(*parkedLimit, 0)) << 20,
		idleWindow:  *idle, keepLogs: *keep, floor: *floor, parkedRing: *parkedRing, transferdEnv: env, pgo: *pgo,
		events: eventsOptions{transfers: max(*evN, 1), concurrency: max(*evC, 1), minAnswer: *evMin, maxAnswer: max(*evMax, *evMin),
			oneDomain: max(*evOne, 1)}}
	for _, w := range strings.Split(*parkedWatch, ",") {
		switch w = strings.TrimSpace(w); w {
		case "shipped", "quiet":
			o.parkedWatch = append(o.parkedWatch, w == "quiet")
		case "":
		default:
			return fmt.Errorf("-parked-watch: unknown pass %q", w)
		}
	}
	for _, s := range strings.Split(*scen, ",") {
		switch s = strings.TrimSpace(s); s {
		case "throughput", "parked", "store", "events":
			o.scenarios[s] = true
		case "":
		default:
			return fmt.Errorf("-scenarios: unknown scenario %q", s)
		}
	}
	var err error
	if o.concurrency, err = ints("concurrency", *conc); err != nil {
		return err
	}
	if o.parked, err = ints("parked", *parked); err != nil {
		return err
	}
	if o.storeSizes, err = ints("store-sizes", *sizes); err != nil {
		return err
	}
	if o.naiveGaps, err = durations("naive-gaps", *naiveGaps); err != nil {
		return err
	}
	if *cpuprofile != "" {
		if !o.scenarios["throughput"] {
			return errors.New("-cpuprofile profiles the throughput scenario: add it to -scenarios")
		}
		// Absolute, so that the line saying where it was written is
		// enough to find it.
		if o.cpuprofile, err = filepath.Abs(*cpuprofile); err != nil {
			return err
		}
	}
	if *heapprofile != "" {
		if !o.scenarios["parked"] {
			return errors.New("-heapprofile profiles the parked scenario: add it to -scenarios")
		}
		if o.heapprofile, err = filepath.Abs(*heapprofile); err != nil {
			return err
		}
	}
	if o.noSQLite = *storePGOnly; o.noSQLite && o.pg == "" {
		return errors.New("-store-pg-only needs -pg")
	}
	for _, p := range strings.Split(*provs, ",") {
		switch p = strings.TrimSpace(p); p {
		case "netsapiens", "bandwidth":
			o.providers = append(o.providers, p)
		case "":
		default:
			return fmt.Errorf("-providers: unknown provider %q", p)
		}
	}

	if *webhooks != "" {
		wenv, r, err := webhookEnv(*webhooks)
		if err != nil {
			return err
		}
		o.transferdEnv = append(o.transferdEnv, wenv...)
		if r != nil {
			o.hooks = r
			defer r.Close()
			defer func() { fmt.Fprintf(stdout, "\n%s\n", r) }()
		}
	}

	dir, err := os.MkdirTemp("", "transferbench-")
	if err != nil {
		return err
	}
	if o.keepLogs {
		fmt.Fprintln(stdout, "logs and data in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(stdout, "transferbench: %d CPUs, %s, %s\n", runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format(time.DateOnly))
	var bins binaries
	if o.scenarios["throughput"] || o.scenarios["parked"] || o.scenarios["events"] {
		if bins, err = build(ctx, dir, buildOptions{floor: o.floor && o.scenarios["throughput"], pgo: o.pgo, profiling: o.cpuprofile != "" || o.heapprofile != ""}); err != nil {
			return err
		}
	}
	if o.scenarios["throughput"] {
		if err := throughput(ctx, o, bins, dir, stdout); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	if o.scenarios["parked"] {
		if err := parkedScenario(ctx, o, bins, dir, stdout); err != nil {
			return fmt.Errorf("parked: %w", err)
		}
	}
	if o.scenarios["events"] {
		if err := eventsScenario(ctx, o, bins, dir, stdout); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	if o.scenarios["store"] {
		if err := storeScenario(ctx, o, dir, stdout); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// ints parses a comma-separated list of positive numbers.
func ints(name, s string) ([]int, error) {
	return positives(name, s, "number", strconv.Atoi)
}

// durations parses a comma-separated list of positive durations.
func durations(name, s string) ([]time.Duration, error) {
	return positives(name, s, "duration", time.ParseDuration)
}

// positives parses the comma-separated values of flag -name with parse;
// each must be above zero.
func positives[T int | time.Duration](name, s, what string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive %s", name, f, what)
		}
		out = append(out, v)
	}
	return out, nil
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// logFile opens a file for a process's output in dir.
func logFile(dir, name string) (*os.File, error) {
	return os.Create(dir + "/" + name + ".log")
}
