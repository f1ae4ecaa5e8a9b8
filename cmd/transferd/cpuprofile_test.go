//go:build cpuprofile

package main

import (
	"compress/gzip"
	"crypto/sha256"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// The profiling build writes a CPU profile from start to exit
// (transferbench -cpuprofile; CI runs this with -tags cpuprofile).
func TestProfilingBuildWritesACPUProfile(t *testing.T) {
	path, stop := startProfileTo(t)
	sum := sha256.Sum256(nil)
	for range 20000 {
		sum = sha256.Sum256(sum[:])
	}
	stop()
	// runtime/pprof writes a gzipped protocol buffer; a profile without a
	// single sample still names its sample types and period.
	b := readGzip(t, path)
	if !strings.Contains(string(b), "nanoseconds") {
		t.Fatalf("%d bytes that are not a CPU profile", len(b))
	}
}

// A profile that cannot be written stops transferd before it starts,
// rather than a benchmark finding out at the end.
func TestProfilingBuildRefusesAnUnwritableProfile(t *testing.T) {
	t.Setenv("TRANSFERD_CPUPROFILE", filepath.Join(t.TempDir(), "missing", "cpu.pprof"))
	if _, err := startProfile(); err == nil || !strings.Contains(err.Error(), "TRANSFERD_CPUPROFILE") {
		t.Fatalf("startProfile: %v, want an error naming TRANSFERD_CPUPROFILE", err)
	}
}

// retained is what TestProfilingBuildWritesAHeapProfileOnSIGUSR1 keeps
// live, allocated by a function whose name the profile must carry.
var retained []byte

//go:noinline
func allocateRetainedForHeapProfile() { retained = make([]byte, 8<<20) }

// SIGUSR1 makes the profiling build write the live heap, as it stands at
// the signal, where TRANSFERD_HEAPPROFILE says (transferbench
// -heapprofile).
func TestProfilingBuildWritesAHeapProfileOnSIGUSR1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap.pprof")
	t.Setenv("TRANSFERD_HEAPPROFILE", path)
	stop, err := startProfile()
	if err != nil {
		t.Fatal(err)
	}
	allocateRetainedForHeapProfile()
	// The signal package hands a signal to every channel registered for
	// it in one go, under the lock that signal.Stop takes: once this
	// channel has it, the profiler's has it too, and stop (which stops
	// the profiler's channel, then waits for its goroutine) writes the
	// profile before it returns.
	seen := make(chan os.Signal, 1)
	signal.Notify(seen, syscall.SIGUSR1)
	defer signal.Stop(seen)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	<-seen
	stop()
	runtime.KeepAlive(retained)
	b := readGzip(t, path)
	for _, want := range []string{"inuse_space", "allocateRetainedForHeapProfile"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the heap profile (%d bytes) does not name %s", len(b), want)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".heap*")); len(leftovers) > 0 {
		t.Errorf("temporary files left beside the profile: %v", leftovers)
	}
}

// A heap profile that could not be written stops transferd at start.
func TestProfilingBuildRefusesAnUnwritableHeapProfile(t *testing.T) {
	t.Setenv("TRANSFERD_HEAPPROFILE", filepath.Join(t.TempDir(), "missing", "heap.pprof"))
	if _, err := startProfile(); err == nil || !strings.Contains(err.Error(), "TRANSFERD_HEAPPROFILE") {
		t.Fatalf("startProfile: %v, want an error naming TRANSFERD_HEAPPROFILE", err)
	}
}

// readGzip reads the protocol buffer runtime/pprof wrote to path.
func readGzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("the profile is not gzipped: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
