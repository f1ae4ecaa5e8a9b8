// Package benchutil measures what DESIGN.md §7's targets are stated in:
// CPU time per operation, which wall-clock benchmarks do not show.
package benchutil

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the process's user plus system CPU time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the CPU time spent since start, per b.N, as cpu-ns/op.
// It counts every goroutine of the process (the simulator's too, when it
// runs in the same process), so it bounds the measured code from above.
func ReportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(CPUTime()-start)/float64(b.N), "cpu-ns/op")
}
