package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TRANSFERD_SHUTDOWN_TIMEOUT took any positive value. A nanosecond, or
// anything shorter than a step, cut the unhold that gives a caller back
// at shutdown, leaving the caller held for the next owner (a lone
// replica's restart); near a time.Duration's largest value the lock
// patience of a restart (delay plus timeout plus a margin) overflowed,
// and a restart overlapping the old process failed at once. It is now
// between TRANSFERD_STEP_TIMEOUT and an hour, and the delay at most an
// hour; the README's table says so, with the code's ceiling.
func TestAShutdownTimeoutOutsideItsBoundsIsRefused(t *testing.T) {
	for _, tc := range []struct {
		timeout, step, delay string
		refused              string // the variable named, or "" when taken
	}{
		{"30s", "15s", "0s", ""},
		{"15s", "15s", "0s", ""},
		{"1s", "1s", "0s", ""},
		{"1h", "15s", "1h", ""},
		{"1ns", "15s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"14s", "15s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"999ms", "1s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"0s", "15s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"1h0m1s", "15s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"2562047h47m16s", "15s", "0s", "TRANSFERD_SHUTDOWN_TIMEOUT"},
		{"30s", "15s", "2562047h47m16s", "TRANSFERD_SHUTDOWN_DELAY"},
	} {
		t.Run(tc.timeout+","+tc.step+","+tc.delay, func(t *testing.T) {
			t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", tc.timeout)
			t.Setenv("TRANSFERD_STEP_TIMEOUT", tc.step)
			t.Setenv("TRANSFERD_SHUTDOWN_DELAY", tc.delay)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			for _, name := range []string{"TRANSFERD_SHUTDOWN_TIMEOUT", "TRANSFERD_SHUTDOWN_DELAY"} {
				named := err != nil && strings.Contains(err.Error(), name+": must be")
				if named != (name == tc.refused) {
					t.Errorf("validate = %v; want %s refused: %v", err, name, name == tc.refused)
				}
			}
			if err == nil && cfg.ShutdownDelay+cfg.ShutdownTimeout+lockPatienceMargin <= 0 {
				t.Errorf("a restart's lock patience overflows: %s", cfg.ShutdownDelay+cfg.ShutdownTimeout+lockPatienceMargin)
			}
		})
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TRANSFERD_SHUTDOWN_TIMEOUT", "TRANSFERD_SHUTDOWN_DELAY"} {
		row := regexp.MustCompile("(?m)^\\| `" + name + "` \\|.*$").FindString(string(readme))
		m := regexp.MustCompile("at most `([^`]+)`").FindStringSubmatch(row)
		if m == nil {
			t.Errorf("the README's row of %s says no ceiling:\n%s", name, row)
			continue
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d != shutdownCeiling {
			t.Errorf("the README's row of %s says at most %s; the code %s", name, m[1], shutdownCeiling)
		}
		if name == "TRANSFERD_SHUTDOWN_TIMEOUT" && !strings.Contains(row, "at least `TRANSFERD_STEP_TIMEOUT`") {
			t.Errorf("the README's row of %s does not say its floor, TRANSFERD_STEP_TIMEOUT:\n%s", name, row)
		}
	}
}
