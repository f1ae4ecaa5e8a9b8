package client

import "context"

// SetIdlePause replaces the pause WaitTransfer makes after an answer
// that waited for nothing; restore puts it back.
func SetIdlePause(f func(context.Context) error) (restore func()) {
	old := idlePause
	idlePause = f
	return func() { idlePause = old }
}
