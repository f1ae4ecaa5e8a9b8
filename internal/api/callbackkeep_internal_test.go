package api

import (
	"testing"
	"time"
)

// A callback's wait is CallbackKeepTimeout, 5 s by default, and half the
// write timeout at most, so that the 503 after it is still written.
func TestCallbackKeepTimeout(t *testing.T) {
	for _, c := range []struct {
		keep, write, want time.Duration
	}{
		{0, 0, DefaultCallbackKeepTimeout},
		{0, 30 * time.Second, DefaultCallbackKeepTimeout},
		{time.Second, 30 * time.Second, time.Second},
		{0, 4 * time.Second, 2 * time.Second},
		{10 * time.Second, 0, 10 * time.Second},
	} {
		if got := (Config{CallbackKeepTimeout: c.keep, WriteTimeout: c.write}).keepTimeout(); got != c.want {
			t.Errorf("CallbackKeepTimeout %s, WriteTimeout %s: %s, want %s", c.keep, c.write, got, c.want)
		}
	}
}
