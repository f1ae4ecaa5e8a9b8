//go:build !linux

package crashtest

import "syscall"

// childAttr: only Linux can tie a child's life to its parent's; elsewhere
// the tests' cleanups kill the children.
func childAttr() *syscall.SysProcAttr { return nil }
