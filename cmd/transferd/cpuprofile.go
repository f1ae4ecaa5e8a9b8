//go:build cpuprofile

package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// startProfile, in a profiling build (go build -tags cpuprofile), writes
// the process's CPU profile to the file TRANSFERD_CPUPROFILE names, from
// start to a clean exit. transferbench -cpuprofile runs such a build
// under load and merges its profiles: what the performance passes of
// docs/benchmarks.md read, and what a profile-guided build (transferbench
// -pgo) is compiled with.
//
// With TRANSFERD_HEAPPROFILE set, the same build writes the live heap to
// that file each time the process gets SIGUSR1 (transferbench
// -heapprofile, once its parked transfers are in place): a profile of
// what a long-lived process holds, which one taken at exit would not
// show. The shipped build has no profiler (cpuprofile_off.go): nothing to
// switch on by mistake in production, and SIGUSR1 keeps its default.
func startProfile() (stop func(), err error) {
	stopHeap := func() {}
	if path := os.Getenv("TRANSFERD_HEAPPROFILE"); path != "" {
		if err := checkWritable(path); err != nil {
			return nil, fmt.Errorf("TRANSFERD_HEAPPROFILE: %w", err)
		}
		// One sample per 4 KiB allocated rather than the runtime's 512
		// KiB: a parked transfer holds a few kilobytes, in pieces of
		// tens to hundreds of bytes, which the default rate would
		// leave to a handful of samples. Set before the process
		// allocates what it keeps.
		runtime.MemProfileRate = heapProfileRate
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		wait := heapProfileOn(sig, path)
		stopHeap = func() {
			signal.Stop(sig)
			close(sig)
			wait()
		}
	}
	path := os.Getenv("TRANSFERD_CPUPROFILE")
	if path == "" {
		return stopHeap, nil
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		stopHeap()
		return nil, fmt.Errorf("TRANSFERD_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "transferd: TRANSFERD_CPUPROFILE:", err)
		}
		stopHeap()
	}, nil
}

// heapProfileRate is the profiling build's runtime.MemProfileRate when it
// writes heap profiles.
const heapProfileRate = 4096

// checkWritable fails now, not at the first signal, if path's directory
// takes no file.
func checkWritable(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".heapcheck-*")
	if err != nil {
		return err
	}
	_ = f.Close()
	return os.Remove(f.Name())
}

// heapProfileOn writes the live heap to path for each value sig delivers,
// until sig is closed; the function it returns waits for that.
func heapProfileOn(sig <-chan os.Signal, path string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sig {
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintln(os.Stderr, "transferd: TRANSFERD_HEAPPROFILE:", err)
			}
		}
	}()
	return func() { <-done }
}

// writeHeapProfile collects garbage first, so that the profile's in-use
// figures are what is live now rather than as of the last cycle, and
// renames the profile into place, so that a reader polling for path
// never sees half of one.
func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.CreateTemp(filepath.Dir(path), ".heap-*.pprof")
	if err != nil {
		return err
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
