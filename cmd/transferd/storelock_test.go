//go:build !storefloor

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/sqlite"
)

// pauseFor makes the lock's pauses return at once, each calling each
// (the clock of a test is the count of pauses), for the test's duration.
func pauseFor(t *testing.T, each func(n int)) *int {
	t.Helper()
	n := new(int)
	old := lockSleep
	lockSleep = func(ctx context.Context, _ time.Duration) error {
		*n++
		if each != nil {
			each(*n)
		}
		return ctx.Err()
	}
	t.Cleanup(func() { lockSleep = old })
	return n
}

// holdDataDir opens the store in dir, as another transferd would, until
// the test ends or the returned func is called.
func holdDataDir(t *testing.T, dir string) func() {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return func() { s.Close() }
}

// A start that finds the data directory held by a transferd that is
// exiting (a restart overlapping its shutdown) says so, and opens the
// store once it has let go.
func TestStartWaitsForAnExitingTransferd(t *testing.T) {
	dir := t.TempDir()
	release := holdDataDir(t, dir)
	pauses := pauseFor(t, func(n int) {
		if n == 3 {
			release()
		}
	})
	logs := newLogWatch()
	s, closeStore, err := openStore(context.Background(), &config{DataDir: dir, ShutdownTimeout: 30 * time.Second}, time.Now, zerolog.New(logs))
	if err != nil {
		t.Fatalf("openStore after the holder let go: %v", err)
	}
	defer closeStore()
	if _, ok := s.(*sqlite.Store); !ok || *pauses != 3 {
		t.Fatalf("openStore opened a %T after %d pauses, want the SQLite store after 3", s, *pauses)
	}
	var warned, released int
	for _, m := range logs.all() {
		switch {
		case strings.HasPrefix(m["message"].(string), "another transferd is using the data directory: waiting for it to exit"):
			warned++
			if m["level"] != "warn" || m["holder_pid"] != float64(os.Getpid()) || m["lock"] != filepath.Join(dir, sqlite.LockFileName) ||
				m["patience_ms"] != float64(40000) || m["holder_host"] == nil || m["holder_since"] == nil {
				t.Errorf("the warning %v, want the holder, the lock and a patience of 40 s", m)
			}
		case m["message"] == "the other transferd let go of the data directory":
			released++
			if m["waited_ms"] != float64(3*lockRetry/time.Millisecond) {
				t.Errorf("%v, want 3 pauses waited", m)
			}
		}
	}
	if warned != 1 || released != 1 {
		t.Errorf("%d warnings and %d lines of the release, want one each:\n%v", warned, released, logs.all())
	}
}

// A start on a data directory that another transferd keeps using fails,
// after TRANSFERD_SHUTDOWN_TIMEOUT plus lockPatienceMargin, with an error
// that names the holder and says what to do.
func TestStartRefusesADataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	holdDataDir(t, dir)
	pauses := pauseFor(t, nil)
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "5s")
	t.Setenv("TRANSFERD_STEP_TIMEOUT", "5s") // the shutdown's floor
	t.Setenv("TRANSFERD_DATA_DIR", dir)
	logs := newLogWatch()
	err := run(context.Background(), nil, io.Discard, logs)
	wantDataDirInUse(t, err, dir, os.Getpid(), "15s")
	if want := int((15 * time.Second) / lockRetry); *pauses != want {
		t.Errorf("%d pauses, want %d", *pauses, want)
	}
	for _, m := range logs.all() {
		if m["message"] == "listening" {
			t.Errorf("transferd listened on a data directory in use: %v", m)
		}
	}
}

// wantDataDirInUse fails the test unless err is the start's refusal of
// dir, which pid holds, after waiting waited.
func wantDataDirInUse(t *testing.T, err error, dir string, pid int, waited string) {
	t.Helper()
	if !sqlite.Locked(err) {
		t.Fatalf("the start on a data directory in use: %v, want the store's refusal", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"opening the SQLite store in " + dir + ": sqlite: open " + dir + ": another transferd (pid " + strconv.Itoa(pid) + " on host ",
		") is using this data directory: it holds the lock on " + filepath.Join(dir, sqlite.LockFileName) + ". ",
		"stop the other process, or give this one a data directory of its own (waited " + waited + " for it to exit)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error\n\t%s\ndoes not say\n\t%s", msg, want)
		}
	}
}

// A start stopped (SIGTERM) while it waits ends at once, with the
// refusal.
func TestStartStoppedWhileWaitingForTheDataDirectory(t *testing.T) {
	dir := t.TempDir()
	holdDataDir(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	pauses := pauseFor(t, func(n int) {
		if n == 2 {
			cancel()
		}
	})
	_, err := openSQLite(ctx, dir, time.Minute, zerolog.Nop())
	if !sqlite.Locked(err) || !strings.HasSuffix(err.Error(), "(stopped after waiting 250ms for it to exit)") || *pauses != 2 {
		t.Fatalf("a start stopped while it waits: %v after %d pauses", err, *pauses)
	}
}

// Other errors of the store are not waited for.
func TestStartDoesNotWaitForOtherStoreErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pauses := pauseFor(t, nil)
	if _, err := openSQLite(context.Background(), f, time.Minute, zerolog.Nop()); err == nil || sqlite.Locked(err) || *pauses != 0 {
		t.Fatalf("a data directory that is a file: %v after %d pauses, want an error at once", err, *pauses)
	}
}

// The program exits non-zero with the refusal on stderr, as with every
// error of its start. The test re-runs itself as transferd (main) on a
// directory this process holds.
func TestMainExitsOnADataDirectoryInUse(t *testing.T) {
	if os.Getenv("TRANSFERD_TEST_RUN_MAIN") == "1" {
		lockSleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
		os.Args = os.Args[:1]
		main()
		os.Exit(0) // not reached: main exits
	}
	dir := t.TempDir()
	holdDataDir(t, dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainExitsOnADataDirectoryInUse$", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRANSFERD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TRANSFERD_TEST_RUN_MAIN=1", "TRANSFERD_DATA_DIR="+dir,
		"TRANSFERD_LISTEN_ADDR=127.0.0.1:0", "TRANSFERD_DEMO_ADDR=127.0.0.1:0", "TRANSFERD_SHUTDOWN_TIMEOUT=1s", "TRANSFERD_STEP_TIMEOUT=1s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("transferd on a data directory in use: %v, want exit status 1\n%s", err, stderr.String())
	}
	var last string
	for l := range strings.Lines(stderr.String()) {
		last = strings.TrimSuffix(l, "\n")
	}
	if want := "transferd: opening the SQLite store in " + dir + ": sqlite: open " + dir + ": another transferd (pid " + strconv.Itoa(os.Getpid()) + " on host "; !strings.HasPrefix(last, want) ||
		!strings.HasSuffix(last, "give this one a data directory of its own (waited 11s for it to exit)") {
		t.Errorf("the last line on stderr\n\t%s\nwant\n\t%s…(waited 11s for it to exit)", last, want)
	}
	if !strings.Contains(stderr.String(), `"message":"another transferd is using the data directory: waiting for it to exit`) {
		t.Errorf("no warning logged while waiting:\n%s", stderr.String())
	}
}
