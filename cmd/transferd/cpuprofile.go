//go:build cpuprofile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile, in a profiling build (go build -tags cpuprofile), writes
// the process's CPU profile to the file TRANSFERD_CPUPROFILE names, from
// start to a clean exit. transferbench -cpuprofile runs such a build
// under load and merges its profiles: what the performance passes of
// docs/benchmarks.md read, and what a profile-guided build (transferbench
// -pgo) is compiled with. The shipped build has no profiler
// (cpuprofile_off.go): nothing to switch on by mistake in production.
func startProfile() (stop func(), err error) {
	path := os.Getenv("TRANSFERD_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("TRANSFERD_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("TRANSFERD_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "transferd: TRANSFERD_CPUPROFILE:", err)
		}
	}, nil
}
