package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// gogc reads the runtime's GOGC without setting it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		live       uint64
		floor      uint64
		base, want int
	}{
		{"a small heap gets the floor as its goal", 4 * mib, 32 * mib, 100, 701},
		{"a heap whose usual goal reaches the floor keeps the base", 16 * mib, 32 * mib, 100, 100},
		{"a large heap keeps the base", 41 * mib, 32 * mib, 100, 100},
		{"an operator's higher base is kept", 4 * mib, 32 * mib, 800, 800},
		{"a lower base is raised too", 8 * mib, 32 * mib, 50, 301},
		{"GOGC=off stays off", 4 * mib, 32 * mib, -1, -1},
		{"nothing live yet: the base", 0, 32 * mib, 100, 100},
		{"a tiny heap is capped", 1024, 32 * mib, 100, maxPercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Percent(tc.live, tc.floor, tc.base)
			if got != tc.want {
				t.Fatalf("Percent(%d, %d, %d) = %d, want %d", tc.live, tc.floor, tc.base, got, tc.want)
			}
			if tc.live > 0 && got > 0 && got < maxPercent && tc.live+tc.live*uint64(got)/100 < tc.floor {
				t.Fatalf("GOGC %d gives a goal under the floor", got)
			}
		})
	}
}

// After each collection the floor sets GOGC from what is live: raised while
// the heap is small, back at the base once what is live reaches half the
// floor, and the base again after Stop.
func TestFloorFollowsTheLiveHeap(t *testing.T) {
	base := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(base) })
	const floor = 256 << 20 // far above this test process's own live heap
	tuned := make(chan int, 1)
	f := start(floor, func(p int) {
		select {
		case <-tuned: // keep only the newest
		default:
		}
		tuned <- p
	})
	t.Cleanup(f.Stop)
	collect := func() int {
		t.Helper()
		// A collection ends with our cleanup queued; a second one makes
		// sure a cleanup armed during the first has run as well.
		for {
			runtime.GC()
			select {
			case p := <-tuned:
				return p
			default:
			}
		}
	}
	if p := collect(); p <= 100 {
		t.Fatalf("with a small live heap GOGC is %d, want it raised", p)
	}
	if got := gogc(); got <= 100 {
		t.Fatalf("the runtime's GOGC is %d, want the raised one", got)
	}

	big := make([]byte, floor/2)
	for i := range big {
		big[i] = byte(i)
	}
	for collect() != 100 {
		// the cleanup of a collection before big was live may come first
	}
	runtime.KeepAlive(big)

	f.Stop()
	if got := gogc(); got != 100 {
		t.Fatalf("after Stop GOGC is %d, want the base 100", got)
	}
}
