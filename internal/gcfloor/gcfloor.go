// Package gcfloor keeps the Go collector from running over and over while
// the live heap is small.
//
// With the default GOGC=100 the collector runs each time the heap doubles
// what was live after the last collection. transferd under load keeps only
// a few MiB live (the records and requests of the transfers in flight) and
// allocates about 120 KB per transfer, so the heap goal sat at about 8 MB
// and the collector ran 15 times a second at 32 transfers at a time: 9 % of
// transferd's CPU on SQLite and 20 % on PostgreSQL (docs/benchmarks.md,
// twelfth and thirteenth passes). Raising GOGC for good would not do: 10,000 parked
// transfers keep about 41 MB live, and GOGC=400 would let their heap grow
// to five times that.
//
// A floor does both: after each collection GOGC is set so that the next
// heap goal is the floor, and never below the GOGC in force when the floor
// started. A small live heap gets a goal of the floor, a large one the
// usual goal; the memory limit (GOMEMLIMIT, or the container's, set by
// transferd at start) still bounds the heap either way.
//
// The GOGC is computed with the runtime's own goal, not the textbook
// live×(1+GOGC/100): the runtime adds the stacks and globals it scans,
// times GOGC/100, and never sets a goal under its heap minimum, 4 MiB
// times GOGC/100. A floor blind to both set GOGC 1792 on an idle
// transferd (2 MiB live), whose goal was then 72 MiB, not 32: the first
// burst of load grew the heap to 67 MiB and the process to 101 MiB of RSS
// (docs/benchmarks.md, fourteenth pass).
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// runtimeHeapMinimum is the Go runtime's smallest heap goal at GOGC=100
// (defaultHeapMinimum in runtime/mgcpacer.go). It scales with GOGC: at a
// GOGC above floor/runtimeHeapMinimum×100 the goal is above the floor
// whatever is live. TestGoalIsTheFloor checks this against the runtime.
const runtimeHeapMinimum = 4 << 20

// Percent is the GOGC whose heap goal is floor bytes, for a live heap of
// live bytes whose collection also scans roots bytes of stacks and
// globals: base when base's goal already reaches the floor, and never
// less. The runtime's goal is live + (live+roots)×GOGC/100, and at least
// runtimeHeapMinimum×GOGC/100, so for a heap that small GOGC is the one
// whose minimum is the floor. A negative base (GOGC=off) is kept, and so
// is base while nothing was found live yet.
func Percent(live, roots, floor uint64, base int) int {
	if base < 0 || live == 0 {
		return base
	}
	scanned := live + roots
	if live+scanned*uint64(base)/100 >= floor {
		return base
	}
	p := (floor-live)*100/scanned + 1 // +1: round up, so the goal reaches the floor
	p = min(p, floor*100/runtimeHeapMinimum)
	return max(int(p), base)
}

// Floor tunes GOGC after every collection; see Start.
type Floor struct {
	floor uint64
	base  int

	mu      sync.Mutex
	stopped bool
	current int // the GOGC last set
	// tuned, if set (tests), is called with the GOGC set after each
	// collection.
	tuned func(percent int)
}

// sentinel is the object whose cleanup marks the end of a collection. It
// holds a pointer so that the runtime's tiny allocator, whose objects may
// never be collected alone, does not take it.
type sentinel struct{ _ *int }

// Start keeps the heap goal at least floor bytes from the next collection
// on, until Stop. The GOGC in force now (100, or the GOGC environment
// variable's) is the lowest it sets; callers leave an operator's explicit
// GOGC alone by not starting a floor.
func Start(floor uint64) *Floor {
	return start(floor, nil)
}

func start(floor uint64, tuned func(int)) *Floor {
	base := debug.SetGCPercent(100) // reads it; set back at once
	debug.SetGCPercent(base)
	f := &Floor{floor: floor, base: base, current: base, tuned: tuned}
	f.arm()
	return f
}

// arm registers a cleanup that runs once the next collection has found a
// fresh sentinel unreachable: a collection has ended.
func (f *Floor) arm() {
	runtime.AddCleanup(&sentinel{}, func(f *Floor) { f.tune() }, f)
}

// tune runs after a collection, on the runtime's cleanup goroutine.
func (f *Floor) tune() {
	live, roots := heapAndRoots()
	p := Percent(live, roots, f.floor, f.base)
	f.mu.Lock()
	stopped := f.stopped
	if !stopped && p != f.current {
		debug.SetGCPercent(p)
		f.current = p
	}
	f.mu.Unlock()
	if stopped {
		return
	}
	if f.tuned != nil {
		f.tuned(p)
	}
	f.arm()
}

// Stop ends the tuning and puts GOGC back to what it was at Start.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		debug.SetGCPercent(f.base)
	}
}

// heapAndRoots reads what the last collection found live on the heap, and
// the stacks and globals it scanned: the terms of the runtime's heap goal.
func heapAndRoots() (live, roots uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return v(0), v(1) + v(2)
}
