package main

import (
	"path/filepath"
	"testing"
)

// startProfileTo starts the build's profiler, if it has one, as transferd
// does with TRANSFERD_CPUPROFILE set to a file of the test's: it returns
// that file's path and what stops the profile.
func startProfileTo(t *testing.T) (path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "cpu.pprof")
	t.Setenv("TRANSFERD_CPUPROFILE", path)
	stop, err := startProfile()
	if err != nil {
		t.Fatal(err)
	}
	return path, stop
}
