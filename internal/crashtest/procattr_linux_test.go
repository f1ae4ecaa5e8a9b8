package crashtest

import "syscall"

// childAttr makes a child process die with the test binary, even when the
// binary itself is killed (go test's timeout), so no transferd or pbxsim is
// ever left behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
