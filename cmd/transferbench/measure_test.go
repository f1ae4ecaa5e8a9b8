package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (tr) ans ferd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * 10 * time.Millisecond; got != want {
		t.Fatalf("cpu = %v, want %v (utime 250 + stime 75 ticks)", got, want)
	}
	if _, err := parseStatCPU("4242 (short) S 1 2"); err == nil {
		t.Fatal("a truncated stat line parsed")
	}
	// A parent's reaped children: cutime 40, cstime 5.
	stat = "4242 (postgres) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 40 5 20 0 9 0 100 0 0 18446744073709551615"
	own, reaped, err := parseStatCPUs(stat)
	if err != nil || own != 325*clockTick || reaped != 45*clockTick {
		t.Fatalf("own %v, reaped %v, %v; want 325 and 45 ticks", own, reaped, err)
	}
	if _, _, err := parseStatCPUs("4242 (short) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 -1 5"); err == nil {
		t.Fatal("a negative tick count parsed")
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\ttransferd\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t   65536 kB\n"
	for name, want := range map[string]int64{"VmHWM": 123456 * 1024, "VmRSS": 65536 * 1024} {
		got, err := parseStatusKB(strings.NewReader(status), name)
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := parseStatusKB(strings.NewReader(status), "VmSwap"); err == nil {
		t.Error("a missing field was found")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one sample = %v", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %v", got)
	}
}

// The run's -transferd-env settings reach transferd's environment last,
// so that they override the benchmark's and the scenario's own; the
// throughput scenario once started transferd without them.
func TestDaemonEnvEndsWithTheRunsSettings(t *testing.T) {
	run := options{transferdEnv: []string{"GOGC=400", "TRANSFERD_POLL_INTERVAL=100ms"}}
	env := daemonEnv(run, daemonOptions{sim: "http://sim", dataDir: "d", extra: []string{"TRANSFERD_POLL_INTERVAL=1h"}})
	if got := env[len(env)-2:]; !slices.Equal(got, run.transferdEnv) {
		t.Fatalf("environment ends with %q, want the run's %q", got, run.transferdEnv)
	}
	if !slices.Contains(env, "TRANSFERD_POLL_INTERVAL=1h") || !slices.Contains(env, "TRANSFERD_NETSAPIENS_BASE_URL=http://sim/ns-api/v2") {
		t.Fatalf("the scenario's or the benchmark's settings are missing: %q", env)
	}
}

func TestPositiveLists(t *testing.T) {
	got, err := durations("naive-gaps", " 1ms, ,40ms")
	if err != nil || len(got) != 2 || got[0] != time.Millisecond || got[1] != 40*time.Millisecond {
		t.Fatalf("durations = %v, %v; want [1ms 40ms]", got, err)
	}
	if got, err := durations("naive-gaps", ""); err != nil || len(got) != 0 {
		t.Fatalf("durations of nothing = %v, %v; want none", got, err)
	}
	for _, bad := range []string{"1", "0s", "-1ms", "fast"} {
		if _, err := durations("naive-gaps", bad); err == nil || !strings.Contains(err.Error(), "-naive-gaps") {
			t.Errorf("durations(%q) = %v; want an error naming the flag", bad, err)
		}
	}
	if got, err := ints("concurrency", "1, 32,"); err != nil || !slices.Equal(got, []int{1, 32}) {
		t.Fatalf("ints = %v, %v; want [1 32]", got, err)
	}
	for _, bad := range []string{"0", "-8", "1ms"} {
		if _, err := ints("concurrency", bad); err == nil || !strings.Contains(err.Error(), "-concurrency") {
			t.Errorf("ints(%q) = %v; want an error naming the flag", bad, err)
		}
	}
}
