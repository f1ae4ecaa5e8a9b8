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
// heap goal is at least the floor, and never below the GOGC in force when
// the floor started. A small live heap gets a goal of the floor, a large
// one the usual goal; the memory limit (GOMEMLIMIT, or the container's,
// set by transferd at start) still bounds the heap either way.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxPercent bounds the GOGC the floor sets, for a live heap so small that
// the ratio means nothing (a process that has allocated nearly nothing).
const maxPercent = 10_000

// Percent is the GOGC that gives a live heap of live bytes a heap goal of
// at least floor bytes: base when base already does, at most maxPercent.
// A negative base (GOGC=off) is kept.
func Percent(live, floor uint64, base int) int {
	if base < 0 || live == 0 {
		return base
	}
	if live+live*uint64(base)/100 >= floor {
		return base
	}
	p := (floor-live)*100/live + 1 // +1: round up, so the goal reaches the floor
	return int(min(p, maxPercent))
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
	p := Percent(readUint64("/gc/heap/live:bytes"), f.floor, f.base)
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

// readUint64 reads one of the runtime's metrics; 0 if it has no such one.
func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
