package api

import "time"

// SetStartTimeout shortens the bound on a create's start for a test;
// restore puts it back.
func SetStartTimeout(d time.Duration) (restore func()) {
	old := startTimeout
	startTimeout = d
	return func() { startTimeout = old }
}

// SetRepeatWait shortens how long a repeat waits for the request with its
// Idempotency-Key; restore puts it back.
func SetRepeatWait(d time.Duration) (restore func()) {
	old := repeatWait
	repeatWait = d
	return func() { repeatWait = old }
}
