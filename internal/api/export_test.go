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

// OnStreamRead has every event stream call f after each read of the
// outbox, before it waits for a save or its poll; restore removes it.
func OnStreamRead(f func()) (restore func()) {
	return OnStreamWait(func(<-chan struct{}) { f() })
}

// OnStreamWait is OnStreamRead for a test that looks at the channel of
// the wake the stream then waits for (closed: it was woken).
func OnStreamWait(f func(woken <-chan struct{})) (restore func()) {
	streamRead.Store(&f)
	return func() { streamRead.Store(nil) }
}

// SetStreamKeepAlive sets how long an event stream stays silent before it
// sends a comment; restore puts it back. Restore once the server's
// streams have ended.
func SetStreamKeepAlive(d time.Duration) (restore func()) {
	old := streamKeepAlive
	streamKeepAlive = d
	return func() { streamKeepAlive = old }
}

// SetStreamGap sets the least time between two reads of a stream that
// saves woke; restore puts it back once the server's streams have ended.
func SetStreamGap(d time.Duration) (restore func()) {
	old := streamGap
	streamGap = d
	return func() { streamGap = old }
}

// OnStreamEnd has every event stream that held a wait slot call f once it
// has given the slot back; restore removes it.
func OnStreamEnd(f func()) (restore func()) {
	streamEnded.Store(&f)
	return func() { streamEnded.Store(nil) }
}
