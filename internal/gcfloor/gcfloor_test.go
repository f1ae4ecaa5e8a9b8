package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// metric reads one of the runtime's uint64 metrics: "/gc/gogc:percent"
// reads GOGC without setting it.
func metric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// goal is the runtime's heap goal for a GOGC of p (runtime/mgcpacer.go,
// commit): the live heap plus p % of it and of the roots, and at least p %
// of the heap minimum.
func goal(live, roots uint64, p int) uint64 {
	return max(live+(live+roots)*uint64(p)/100, runtimeHeapMinimum*uint64(p)/100)
}

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		live, roots uint64
		floor       uint64
		base, want  int
	}{
		{"a small heap gets the floor as its goal", 4 * mib, 0, 32 * mib, 100, 701},
		{"stacks and globals count towards the goal", 4 * mib, 1 * mib, 32 * mib, 100, 561},
		{"a heap whose usual goal reaches the floor keeps the base", 16 * mib, 0, 32 * mib, 100, 100},
		{"roots can take a heap's usual goal to the floor", 15 * mib, 2 * mib, 32 * mib, 100, 100},
		{"a large heap keeps the base", 41 * mib, 1 * mib, 32 * mib, 100, 100},
		{"an operator's higher base is kept", 4 * mib, 0, 32 * mib, 800, 800},
		{"a lower base is raised too", 8 * mib, 0, 32 * mib, 50, 301},
		{"GOGC=off stays off", 4 * mib, 0, 32 * mib, -1, -1},
		{"nothing live yet: the base", 0, 0, 32 * mib, 100, 100},
		{"a tiny heap gets the GOGC whose heap minimum is the floor", 1024, 512 << 10, 32 * mib, 100, 800},
		{"a floor under the base's heap minimum keeps the base", 1024, 0, 2 * mib, 100, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Percent(tc.live, tc.roots, tc.floor, tc.base)
			if got != tc.want {
				t.Fatalf("Percent(%d, %d, %d, %d) = %d, want %d", tc.live, tc.roots, tc.floor, tc.base, got, tc.want)
			}
			if got == tc.base {
				return
			}
			// A raised GOGC's goal is the floor, give or take the
			// rounding up of one percent.
			g := goal(tc.live, tc.roots, got)
			if g < tc.floor || g > tc.floor+(tc.live+tc.roots)/100+1 {
				t.Fatalf("GOGC %d gives a goal of %d, want the floor %d", got, g, tc.floor)
			}
		})
	}
}

// startTuned starts a floor for a test, GOGC at 100 to begin with and put
// back afterwards, and returns it with collect, which runs collections
// until the floor has tuned GOGC after one and returns that GOGC.
func startTuned(t *testing.T, floor uint64) (f *Floor, collect func() int) {
	t.Helper()
	base := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(base) })
	tuned := make(chan int, 1)
	f = start(floor, func(p int) {
		select {
		case <-tuned: // keep only the newest
		default:
		}
		tuned <- p
	})
	t.Cleanup(f.Stop)
	return f, func() int {
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
}

// After each collection the floor sets GOGC from what is live: raised while
// the heap is small, back at the base once what is live reaches half the
// floor, and the base again after Stop.
func TestFloorFollowsTheLiveHeap(t *testing.T) {
	const floor = 256 << 20 // far above this test process's own live heap
	f, collect := startTuned(t, floor)
	if p := collect(); p <= 100 {
		t.Fatalf("with a small live heap GOGC is %d, want it raised", p)
	}
	if got := metric("/gc/gogc:percent"); got <= 100 {
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
	if got := metric("/gc/gogc:percent"); got != 100 {
		t.Fatalf("after Stop GOGC is %d, want the base 100", got)
	}
}

// The runtime's own heap goal is the floor, whether its heap minimum sets it
// (a tiny live heap: the test process's own) or live, stacks and globals do
// (a live heap of a fifth of the floor). This is what the floor is for, and
// it breaks if the runtime's goal stops being the one Percent computes.
func TestGoalIsTheFloor(t *testing.T) {
	const floor = 64 << 20
	_, collect := startTuned(t, floor)
	check := func(what string) {
		t.Helper()
		// The first tuning may be a collection's from before the heap
		// changed; by the third the floor has seen the heap as it is.
		var p int
		for range 3 {
			p = collect()
		}
		if g := metric("/gc/heap/goal:bytes"); g < floor || g > floor+floor/100 {
			t.Fatalf("%s: GOGC %d, heap goal %d MiB, want the floor, %d MiB", what, p, g>>20, floor>>20)
		}
	}
	check("a tiny live heap")

	live := make([]byte, floor/5)
	for i := range live {
		live[i] = byte(i)
	}
	// A goroutine whose stack holds about 4 MiB while it waits: the
	// collector scans it, and the goal grows by that times GOGC/100.
	release, deep := make(chan struct{}), make(chan struct{})
	go func() { dig(4<<10, deep, release) }()
	<-deep
	check("a fifth of the floor live, and a deep stack")
	close(release)
	runtime.KeepAlive(live)
}

// dig recurses n frames of about a KiB each, then says so on deep and waits
// for release.
func dig(n int, deep, release chan struct{}) byte {
	var frame [1 << 10]byte
	frame[n%len(frame)] = byte(n)
	if n == 0 {
		close(deep)
		<-release
		return frame[0]
	}
	return dig(n-1, deep, release) + frame[n%len(frame)]
}
