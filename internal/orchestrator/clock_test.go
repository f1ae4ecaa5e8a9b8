package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The engine's clock keeps the monotonic reading: its comparisons within
// the process (a reading against the last request, deadlines, the lease)
// must not follow a stepped wall clock. time.Now().UTC() would drop it.
func TestEngineClockIsMonotonic(t *testing.T) {
	e, err := New(Config{}, nil, nil, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	now := e.now()
	if !strings.Contains(now.String(), " m=") {
		t.Errorf("the engine's clock gave %s, without a monotonic reading", now)
	}
	if later := now.Add(time.Second); !strings.Contains(later.String(), " m=") {
		t.Errorf("a deadline derived from it, %s, lost the monotonic reading", later)
	}
}
