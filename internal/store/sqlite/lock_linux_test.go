package sqlite_test

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// waitExited waits for cmd's process to exit without reaping it
// (waitid with WNOWAIT): it stays a zombie, as a process a supervisor
// has not waited for yet does: it reports reaped false.
func waitExited(t *testing.T, cmd *exec.Cmd) (reaped bool, err error) {
	t.Helper()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("waitid: %v", err)
		}
		return false, nil
	}
}
