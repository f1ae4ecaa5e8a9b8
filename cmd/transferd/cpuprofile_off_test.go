//go:build !cpuprofile

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The shipped build has no profiler: TRANSFERD_CPUPROFILE is not one of
// its settings and writes nothing.
func TestShippedBuildWritesNoProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	t.Setenv("TRANSFERD_CPUPROFILE", path)
	stop, err := startProfile()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the shipped build wrote %s (%v)", path, err)
	}
}
