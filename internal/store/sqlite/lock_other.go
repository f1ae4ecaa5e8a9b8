//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris)

package sqlite

import (
	"os"
	"time"
)

// lockDir takes no lock where there is no flock (Windows, among the
// platforms this package builds for): Open then refuses no second
// process on one data directory, and running one transferd per
// directory is the operator's to ensure. transferd ships for Linux.
func lockDir(dir string, now time.Time) (*os.File, error) { return nil, nil }

func unlockDir(f *os.File) error { return nil }
