//go:build !cpuprofile

package main

import (
	"os"
	"testing"
)

// The shipped build has no profiler: TRANSFERD_CPUPROFILE is not one of
// its settings and writes nothing.
func TestShippedBuildWritesNoProfile(t *testing.T) {
	path, stop := startProfileTo(t)
	stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the shipped build wrote %s (%v)", path, err)
	}
}
