//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockDir takes the exclusive lock on dir's lock file (LockFileName),
// without waiting: a *LockedError names the holder when another open
// file holds it, in this process or another. It then writes the
// holder's details (holderInfo) into the file, and returns it open: the
// lock lasts until unlockDir. The file is opened close-on-exec, as Go
// opens every file, so that no process transferd starts inherits the
// lock.
//
// flock, not fcntl's POSIX locks: a POSIX lock belongs to the process,
// so a second Open in the same process would take it again without a
// conflict, and closing any descriptor of the file would drop it. A
// flock belongs to the open file, and conflicts with every other.
func lockDir(dir string, now time.Time) (*os.File, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			locked := &LockedError{Path: path}
			b := make([]byte, maxHolderInfo)
			n, _ := f.ReadAt(b, 0)
			locked.readHolder(b[:n])
			return nil, locked
		}
		// A file system without flock (some network and FUSE ones):
		// SQLite's WAL is unsafe there too (Store.init).
		return nil, fmt.Errorf("lock %s: %w: put the data directory on a local file system", path, err)
	}
	// Best effort: the lock is taken whatever the file says, and a disk
	// too full for a line of text fails the migrations next.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt(holderInfo(now), 0)
	}
	return f, nil
}

// unlockDir releases the lock lockDir took and closes the file. The
// lock is released explicitly first: it belongs to the open file, which
// a process started at this moment shares until its exec.
func unlockDir(f *os.File) error {
	err := flock(f, unix.LOCK_UN)
	return errors.Join(err, f.Close())
}

// flock applies how to f, again when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = unix.Flock(int(fd), how); ferr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}
