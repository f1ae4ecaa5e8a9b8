package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// parseStatCPU returns utime+stime from the content of /proc/<pid>/stat.
func parseStatCPU(stat string) (time.Duration, error) {
	own, _, err := parseStatCPUs(stat)
	return own, err
}

// parseStatCPUs returns, from the content of /proc/<pid>/stat, the
// process's own CPU time (utime+stime) and that of its children it has
// reaped (cutime+cstime).
func parseStatCPUs(stat string) (own, reaped time.Duration, err error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("stat: no command name in %q", stat)
	}
	// After ") " come state (field 3), ppid (4), …, utime (14), stime (15),
	// cutime (16), cstime (17).
	f := strings.Fields(stat[end+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name, want at least 15", len(f))
	}
	var ticks [4]uint64
	for i := range ticks {
		// cutime and cstime are signed in the kernel's format (long).
		v, perr := strconv.ParseInt(f[11+i], 10, 64)
		if perr != nil || v < 0 {
			return 0, 0, fmt.Errorf("stat: field %d %q is not a tick count", 14+i, f[11+i])
		}
		ticks[i] = uint64(v)
	}
	return time.Duration(ticks[0]+ticks[1]) * clockTick, time.Duration(ticks[2]+ticks[3]) * clockTick, nil
}

// parseStatusKB returns a "Name:   123 kB" field of /proc/<pid>/status
// in bytes (VmHWM: peak resident set; VmRSS: current).
func parseStatusKB(status io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: %s is %q, want a number of kB", name, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: %s: %w", name, err)
		}
		return n * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("status: no %s line", name)
}

// procCPU is a process's CPU time so far, from the OS.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// procMem reads a memory field of /proc/<pid>/status.
func procMem(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusKB(f, name)
}

// cpuOfCommand sums the CPU time of every live process whose command name
// is comm (PostgreSQL's server and its backends are all "postgres"), and
// of the children they have reaped: a backend that exits (a connection
// closed, an autovacuum worker done) moves its time into its parent's,
// the postmaster's, where it is still counted. Counting the live ones
// alone, a backend that exited between two readings took its time with
// it, and a point once read a database CPU of -12.9 ms per transfer.
func cpuOfCommand(comm string) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total time.Duration
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != comm {
			continue
		}
		if own, reaped, err := parseStatCPUs(s); err == nil {
			total += own + reaped
		}
	}
	return total
}

// percentile returns the p-th percentile (0 < p ≤ 100) of samples by the
// nearest-rank method: the smallest sample at or above which p % of the
// samples lie. samples is sorted in place.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	rank := int(math.Ceil(p / 100 * float64(len(samples))))
	rank = min(max(rank, 1), len(samples))
	return samples[rank-1]
}

// ms formats a duration in milliseconds with enough digits for
// sub-millisecond values.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }
