//go:build unix

package storetest

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user and system) the process has used.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// reportCPU adds the metric cpu-ns/op: the process's CPU time per
// iteration since start (a processCPU reading), every goroutine and
// system call included. A durable save mostly waits for the disk, so its
// ns/op is wall time; cpu-ns/op is what it costs the machine, the figure
// issue #11's targets count (docs/benchmarks.md).
func reportCPU(b *testing.B, start time.Duration, ok bool) {
	end, ok2 := processCPU()
	if !ok || !ok2 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
}
