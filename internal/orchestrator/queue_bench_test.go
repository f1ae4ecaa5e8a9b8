package orchestrator

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkQueueWakeUps is a transfer's life in the queue with 128 others
// waiting: three wake-ups, each sooner than the last, then forgotten.
func BenchmarkQueueWakeUps(b *testing.B) {
	q := newQueue()
	defer q.Close()
	ids := make([]string, 129)
	for i := range ids {
		ids[i] = "t" + strconv.Itoa(i)
	}
	for _, id := range ids[1:] {
		q.AddAfter(id, time.Hour)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := ids[0]
		q.AddAfter(id, 30*time.Minute)
		q.AddAfter(id, 20*time.Minute)
		q.AddAfter(id, 10*time.Minute)
		q.Forget(id)
	}
}
