//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/transferd/transferd/internal/store/sqlite"
)

// wantLocked fails the test unless err is Open's refusal of dir, whose
// lock a holder of pid (0: none written) holds, in words an operator
// can act on.
func wantLocked(t *testing.T, err error, dir string, pid int) *sqlite.LockedError {
	t.Helper()
	var locked *sqlite.LockedError
	if !errors.As(err, &locked) || !sqlite.Locked(err) {
		t.Fatalf("Open of a locked directory = %v, want a *sqlite.LockedError", err)
	}
	abs, _ := filepath.Abs(dir)
	msg := err.Error()
	for _, want := range []string{
		"sqlite: open " + abs + ": another transferd ",
		"is using this data directory: it holds the lock on " + filepath.Join(abs, sqlite.LockFileName) + ".",
		"One data directory serves one transferd at a time: stop the other process, or give this one a data directory of its own",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not say %q", msg, want)
		}
	}
	if locked.PID != pid {
		t.Errorf("the refusal names pid %d, want %d", locked.PID, pid)
	}
	if pid > 0 && !strings.Contains(msg, "(pid "+strconv.Itoa(pid)+" on host ") {
		t.Errorf("the refusal %q does not name pid %d and its host", msg, pid)
	}
	return locked
}

// A second Open of a directory whose store is open fails at once — in
// this process too, and through another spelling of the path — and
// leaves the open store working; after Close the next Open succeeds.
func TestOpenLocksTheDataDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	fi, err := os.Stat(filepath.Join(dir, sqlite.LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("the lock file has mode %v, want no group or other access", perm)
	}

	start := time.Now()
	_, err = sqlite.Open(ctx, dir)
	locked := wantLocked(t, err, dir, os.Getpid())
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %s, want at once", took)
	}
	host, _ := os.Hostname()
	if locked.Host != host || time.Since(locked.Since) > time.Hour || locked.Since.After(time.Now()) {
		t.Errorf("the refusal names host %q since %s, want %q since the first Open", locked.Host, locked.Since, host)
	}
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(dir, alias); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(ctx, alias)
	wantLocked(t, err, alias, os.Getpid())

	// The refused Opens touched nothing of the first store's.
	tr := newTransfer("1000")
	if err := first.Create(ctx, tr); err != nil {
		t.Fatalf("the first store after the refusals: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil { // as the pools allow
		t.Fatalf("Close again: %v", err)
	}
	again := open(t, dir)
	if _, err := again.Get(ctx, tr.ID); err != nil {
		t.Fatalf("Get after Close and a new Open: %v", err)
	}
}

// Another process's lock on the file refuses the store too, whatever
// the file says (an operator's flock(1) keeps transferd out this way),
// and an Open that failed after taking the lock released it.
func TestOpenRefusesAnyHolder(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, sqlite.LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("not what transferd writes\n\x00\x1b[2J"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(context.Background(), dir)
	if l := wantLocked(t, err, dir, 0); l.Host != "" || !l.Since.IsZero() ||
		!strings.Contains(err.Error(), ": another transferd is using this data directory") {
		t.Errorf("a lock file of no holder's details: %v (%+v)", err, l)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	open(t, dir).Close()
}

// A read-only data directory, or one that cannot be made, fails Open as
// it did before the lock: a permission error naming the file, not a
// refusal for a lock.
func TestOpenOfADirectoryThatCannotBeWritten(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes in read-only directories")
	}
	parent := t.TempDir()
	readOnly := filepath.Join(parent, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{readOnly, filepath.Join(readOnly, "missing")} {
		_, err := sqlite.Open(context.Background(), dir)
		if err == nil || !strings.HasPrefix(err.Error(), "sqlite: open ") || !errors.Is(err, fs.ErrPermission) || sqlite.Locked(err) {
			t.Errorf("Open(%s) = %v, want a permission error", dir, err)
		}
	}
}

// A holder that is killed (SIGKILL: no Close) leaves the lock with its
// process: the next Open succeeds as soon as it has exited, before it is
// even reaped (the crash tests and supervisors start the next process as
// soon as they see the exit), and finds what it saved. The test re-runs
// itself as the holder.
func TestOpenAfterTheHolderIsKilled(t *testing.T) {
	if dir := os.Getenv("TRANSFERD_SQLITE_LOCK_DIR"); dir != "" {
		lockHolder(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenAfterTheHolderIsKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRANSFERD_SQLITE_LOCK_DIR="+dir)
	stdin, err := cmd.StdinPipe() // closed when the test ends: the holder then exits
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reaped bool
	defer func() {
		if !reaped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var id string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "holding "); ok {
			id = v
			break
		}
	}
	if id == "" {
		t.Fatalf("the holder did not open the store: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	_, err = sqlite.Open(context.Background(), dir)
	wantLocked(t, err, dir, cmd.Process.Pid)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reaped, waitErr := waitExited(t, cmd)
	s := open(t, dir)
	if _, err := s.Get(context.Background(), id); err != nil {
		t.Errorf("Get of the holder's transfer after the kill: %v", err)
	}
	if !reaped {
		reaped, waitErr = true, cmd.Wait()
	}
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the holder ended with %v, want SIGKILL", waitErr)
	}
}

// lockHolder opens the store in dir, saves a transfer, says so, and
// holds the store open until its stdin closes or it is killed.
func lockHolder(dir string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	tr := newTransfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("holding " + tr.ID + "\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(4)
}
