//go:build !linux

package crashtest

import (
	"errors"
	"fmt"
)

// refuseWrites: only Linux can set another process's file size limit, so
// the storm's disk faults need it.
func refuseWrites(pid int) error {
	return fmt.Errorf("refusing the writes of process %d: %w (the storm's disk faults need Linux)", pid, errors.ErrUnsupported)
}

func allowWrites(int) error { return nil }

// crashBackend: finding a PostgreSQL backend's working directory needs
// Linux's /proc.
func crashBackend(pid int, _ string) error {
	return fmt.Errorf("crashing PostgreSQL through its backend %d: %w (the storm's database crashes need Linux)", pid, errors.ErrUnsupported)
}

// pause: the storm's pauses are written for Linux, as its other faults.
func pause(pid int) error {
	return fmt.Errorf("pausing process %d: %w (the storm's pauses need Linux)", pid, errors.ErrUnsupported)
}

func resume(int) error { return nil }

// localBackend: finding a PostgreSQL backend's working directory needs
// Linux's /proc, as the storm's database stalls do.
func localBackend(pid int, _ string) error {
	return fmt.Errorf("finding PostgreSQL's backend %d: %w (the storm's database stalls need Linux)", pid, errors.ErrUnsupported)
}
