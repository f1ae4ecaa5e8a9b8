package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/rs/zerolog"
)

// Inside a container of 512 MiB the Go runtime gets a soft limit of 90 %
// of it, and says so; GOMEMLIMIT, when set, wins.
func TestMemoryLimitFollowsTheContainer(t *testing.T) {
	for _, name := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		if _, ok := os.LookupEnv(name); ok {
			t.Skipf("%s is set in the test's environment", name)
		}
	}
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	var logs bytes.Buffer
	setMemoryLimitFrom(zerolog.New(&logs), memlimit.Limit(512<<20))
	if got, want := debug.SetMemoryLimit(-1), int64(512<<20)*9/10; got < want-1 || got > want {
		t.Errorf("Go memory limit %d, want 90%% of 512 MiB (%d)", got, want)
	}
	if !strings.Contains(logs.String(), `"message":"Go memory limit"`) {
		t.Errorf("no log line of the limit: %s", logs.String())
	}

	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20)
	setMemoryLimitFrom(zerolog.New(&logs), memlimit.Limit(512<<20))
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("with GOMEMLIMIT set the limit is %d, want it left at 300 MiB", got)
	}
}

// The heap floor starts unless the operator set GOGC, and says which.
func TestHeapFloorLeavesAnExplicitGOGCAlone(t *testing.T) {
	var logs bytes.Buffer
	t.Setenv("GOGC", "200")
	if f := startHeapFloor(zerolog.New(&logs)); f != nil {
		f.Stop()
		t.Fatal("a heap floor started with GOGC set")
	}
	if !strings.Contains(logs.String(), `"message":"GOGC is set: no heap floor"`) {
		t.Errorf("no log line of the choice: %s", logs.String())
	}

	os.Unsetenv("GOGC") // t.Setenv puts it back
	logs.Reset()
	f := startHeapFloor(zerolog.New(&logs))
	if f == nil {
		t.Fatal("no heap floor without GOGC")
	}
	f.Stop()
	if !strings.Contains(logs.String(), `"go_heap_floor_bytes":33554432`) {
		t.Errorf("no log line of the floor: %s", logs.String())
	}
}
