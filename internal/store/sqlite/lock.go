package sqlite

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LockFileName is the data directory's lock file, beside the database.
// Open holds an exclusive advisory lock on it (flock) until Close, so
// that a second transferd on one data directory — a second container on
// one volume, a restart that overlaps the process it replaces — fails at
// start instead of running a second engine beside the first: both would
// drive the same transfers, send the same webhooks and look for the same
// orphans. SQLite's own locks and the records' versions keep the data
// consistent either way; the lock keeps the engines to one.
//
// The kernel releases the lock when the process ends, however it ends
// (SIGKILL, a crash, an out-of-memory kill): a dead holder never blocks
// the next start, and there is nothing to clean up. The file is never
// removed (removing a lock file lets two processes lock two different
// files of one name); what it says — the holder's pid, host and start,
// written once the lock is taken — only names the holder in the error of
// a refused Open: the lock is the kernel's, not the file's content, and
// the content outlives the process that wrote it.
//
// Only processes that open the store take the lock: a backup or the
// sqlite3 shell reading transferd.db does not (nor does it need to).
// On a platform without flock (lock_other.go: Windows among those the
// package builds for) Open takes no lock and nothing refuses a second
// process.
const LockFileName = "transferd.lock"

// LockedError is Open's error when something else holds the data
// directory's lock (Locked): another process's store, another store of
// this process, or any other flock of the file. PID, Host and Since are
// what the holder wrote in the lock file (the pid as the holder sees it:
// in a container, its own namespace's); zero when it has not written
// them yet, or wrote something else.
type LockedError struct {
	Path  string // the lock file
	PID   int
	Host  string
	Since time.Time
}

func (e *LockedError) Error() string {
	var holder []string
	if e.PID > 0 {
		holder = append(holder, "pid "+strconv.Itoa(e.PID))
	}
	if e.Host != "" {
		holder = append(holder, "on host "+e.Host)
	}
	if !e.Since.IsZero() {
		holder = append(holder, "since "+e.Since.UTC().Format(time.RFC3339))
	}
	who := "another transferd"
	if len(holder) > 0 {
		who += " (" + strings.Join(holder, " ") + ")"
	}
	return who + " is using this data directory: it holds the lock on " + e.Path +
		". One data directory serves one transferd at a time: stop the other process, or give this one a data directory of its own"
}

// Locked reports whether err, from Open, says that another process
// holds the data directory's lock: waiting for it to exit may cure it.
func Locked(err error) bool {
	var l *LockedError
	return errors.As(err, &l)
}

// holderInfo is what the lock's holder writes in the lock file: a few
// lines an operator can read with cat.
func holderInfo(now time.Time) []byte {
	host, _ := os.Hostname()
	return fmt.Appendf(nil, "pid %d\nhost %s\nsince %s\n", os.Getpid(), printable(host), now.UTC().Format(time.RFC3339))
}

// maxHolderInfo bounds how much of the lock file a refused Open reads.
const maxHolderInfo = 1024

// readHolder fills e from the lock file's content b, as holderInfo wrote
// it; what does not parse is left out.
func (e *LockedError) readHolder(b []byte) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "pid":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				e.PID = n
			}
		case "host":
			e.Host = printable(v)
		case "since":
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				e.Since = t
			}
		}
	}
}

// printable keeps s to one line of printable characters, at most 255
// bytes (a host name's limit): it goes into an error and the logs.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = strings.ToValidUTF8(s[:255], "")
	}
	return s
}
