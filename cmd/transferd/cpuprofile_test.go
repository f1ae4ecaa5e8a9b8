//go:build cpuprofile

package main

import (
	"compress/gzip"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// runtime/pprof writes a gzipped protocol buffer; a profile without a
	// single sample still names its sample types and period.
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("the profile is not gzipped: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
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
