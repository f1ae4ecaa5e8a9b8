//go:build darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package sqlite_test

import (
	"os/exec"
	"testing"
)

// waitExited waits for cmd's process to exit, and reaps it (where
// waitid's WNOWAIT is not at hand, unlike on Linux).
func waitExited(t *testing.T, cmd *exec.Cmd) (reaped bool, err error) {
	t.Helper()
	return true, cmd.Wait()
}
