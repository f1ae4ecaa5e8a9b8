package api

import "time"

// SetStartTimeout shortens the bound on a create's start for a test;
// restore puts it back.
func SetStartTimeout(d time.Duration) (restore func()) {
	old := startTimeout
	startTimeout = d
	return func() { startTimeout = old }
}
