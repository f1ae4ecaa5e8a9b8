package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"testing"
)

// writeProfile writes a CPU profile of a little work to path, as the
// profiling build of transferd does of its whole run.
func writeProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	for range 20000 {
		sum = sha256.Sum256(sum[:])
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// The daemons' profiles become one that pprof (and go build -pgo) reads.
func TestMergeProfiles(t *testing.T) {
	dir := t.TempDir()
	a, b, out := filepath.Join(dir, "cpu-sqlite.pprof"), filepath.Join(dir, "cpu-postgres.pprof"), filepath.Join(dir, "merged.pprof")
	writeProfile(t, a)
	writeProfile(t, b)
	if err := mergeProfiles(context.Background(), out, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	merged, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(merged, []byte{0x1f, 0x8b}) {
		t.Fatalf("the merged profile (%d bytes) is not gzipped as pprof writes it", len(merged))
	}
	if b, err := exec.Command("go", "tool", "pprof", "-raw", out).CombinedOutput(); err != nil {
		t.Fatalf("pprof cannot read the merged profile: %v: %s", err, b)
	}
}

// A daemon that was killed wrote no profile: the run says so rather than
// leave a profile of part of it.
func TestMergeProfilesRefusesAMissingProfile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "cpu-sqlite.pprof")
	writeProfile(t, a)
	empty := filepath.Join(dir, "cpu-postgres.pprof")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.pprof")
	for _, in := range [][]string{{a, filepath.Join(dir, "missing.pprof")}, {a, empty}} {
		err := mergeProfiles(context.Background(), out, in)
		if err == nil || !strings.Contains(err.Error(), "exit cleanly") {
			t.Errorf("merging %v: %v, want an error saying transferd wrote no profile", in, err)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a merged profile was written anyway (%v)", err)
	}
}

// Only the shipped stores' daemons are profiled, and only when asked.
func TestProfileEnv(t *testing.T) {
	dir := t.TempDir()
	if env, path := profileEnv(options{}, dir, "sqlite"); env != nil || path != "" {
		t.Errorf("without -cpuprofile: %v %q", env, path)
	}
	o := options{cpuprofile: filepath.Join(dir, "out.pprof")}
	if env, path := profileEnv(o, dir, "memory"); env != nil || path != "" {
		t.Errorf("the floor build was profiled: %v %q", env, path)
	}
	env, path := profileEnv(o, dir, "postgres")
	if want := filepath.Join(dir, "cpu-postgres.pprof"); path != want || len(env) != 1 || env[0] != "TRANSFERD_CPUPROFILE="+want {
		t.Errorf("postgres: %v %q, want TRANSFERD_CPUPROFILE=%s", env, path, want)
	}
}

func TestCPUProfileNeedsThroughput(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-scenarios", "parked", "-cpuprofile", filepath.Join(t.TempDir(), "cpu.pprof")}, nil, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-cpuprofile") {
		t.Fatalf("run: %v, want -cpuprofile refused without the throughput scenario", err)
	}
}

func TestHeapProfileNeedsParked(t *testing.T) {
	err := run(context.Background(), []string{"-scenarios", "throughput", "-heapprofile", filepath.Join(t.TempDir(), "heap.pprof")}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-heapprofile") {
		t.Fatalf("run: %v, want -heapprofile refused without the parked scenario", err)
	}
}

func TestHeapProfilePath(t *testing.T) {
	for _, c := range []struct{ base, want string }{
		{"", ""},
		{"/x/heap.pprof", "/x/heap-10000-quiet.pprof"},
		{"/x/heap", "/x/heap-10000-quiet"},
	} {
		if got := heapProfilePath(c.base, 10000, "quiet"); got != c.want {
			t.Errorf("heapProfilePath(%q) = %q, want %q", c.base, got, c.want)
		}
	}
}

// The parked scenario, run small, takes the profiling build's heap with
// its transfers parked: a profile pprof reads, of the engine's records.
// It builds transferd and pbxsim, as a run does.
func TestParkedHeapProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds transferd and pbxsim")
	}
	t.Chdir(filepath.Join("..", "..")) // builds from the repository, as a run does
	base := filepath.Join(t.TempDir(), "heap.pprof")
	var out, stderr bytes.Buffer
	err := run(context.Background(), []string{"-scenarios", "parked", "-parked", "200", "-parked-watch", "quiet",
		"-idle-window", "10ms", "-heapprofile", base}, nil, &out, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.Bytes())
	}
	path := heapProfilePath(base, 200, "quiet")
	// The table's row gives the heap and its goal from /metrics.
	if !regexp.MustCompile(`(?m)^ *200 +quiet +\d+ +\d+ +\d+ +[\d.]+ +\d+ / \d+ `).Match(out.Bytes()) {
		t.Errorf("no heap / goal in the parked row:\n%s", out.Bytes())
	}
	b, err := exec.Command("go", "tool", "pprof", "-sample_index=inuse_space", "-top", "-nodecount=1000", "-show=transferd/internal/orchestrator[.]", path).CombinedOutput()
	if err != nil {
		t.Fatalf("pprof cannot read the heap profile: %v: %s", err, b)
	}
	if !strings.Contains(string(b), "transferd/internal/orchestrator.") {
		t.Errorf("the heap profile holds nothing of the engine's:\n%s", b)
	}
}

func TestParseHeap(t *testing.T) {
	text := `# HELP go_memstats_heap_alloc_bytes Number of heap bytes allocated and currently in use.
# TYPE go_memstats_heap_alloc_bytes gauge
go_memstats_heap_alloc_bytes 3.7748736e+07
go_memstats_heap_alloc_bytes_total 1e+09
go_memstats_next_gc_bytes 7.5e+07
`
	alloc, goal, err := parseHeap(strings.NewReader(text))
	if err != nil || alloc != 37748736 || goal != 75000000 {
		t.Fatalf("parseHeap = %d, %d, %v", alloc, goal, err)
	}
	if _, _, err := parseHeap(strings.NewReader("go_memstats_heap_alloc_bytes 1\n")); err == nil {
		t.Fatal("no goal: no error")
	}
}
