package crashtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// refuseWrites makes every write process pid makes to a file fail, as a
// full or failing disk would, until allowWrites: its RLIMIT_FSIZE set to 0
// (prlimit), so that each write(2) fails with EFBIG. Reads still succeed.
// The Go runtime ignores the SIGXFSZ that comes with it, and the process's
// output goes to the test through pipes, which the limit does not cover,
// so nothing it logs meanwhile is lost. A process that is gone is no
// error: the killer may have ended it.
func refuseWrites(pid int) error {
	return setFileSizeLimit(pid, 0)
}

// allowWrites lifts what refuseWrites set.
func allowWrites(pid int) error {
	return setFileSizeLimit(pid, unix.RLIM_INFINITY)
}

func setFileSizeLimit(pid int, limit uint64) error {
	err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// crashBackend SIGKILLs the PostgreSQL backend process pid, which makes
// its postmaster end every other backend and start again through crash
// recovery: the whole server crashes and comes back, as after a kill of
// the database's host process, keeping what its WAL holds. The backend
// must be a process of this machine serving from dataDir (the server's
// data_directory: a backend's working directory), so that a pid read
// from a server elsewhere never signals a process of this one.
func crashBackend(pid int, dataDir string) error {
	if err := localBackend(pid, dataDir); err != nil {
		return err
	}
	return unix.Kill(pid, unix.SIGKILL)
}

// localBackend checks that pid is a PostgreSQL backend of this machine
// serving from dataDir (its working directory), an error wrapping
// fs.ErrNotExist if no such process is left.
func localBackend(pid int, dataDir string) error {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return fmt.Errorf("PostgreSQL's backend %d is not a process this test can see on this machine: %w", pid, err)
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return fmt.Errorf("PostgreSQL's data directory %s is not on this machine: %w", dataDir, err)
	}
	if got, err := filepath.EvalSymlinks(cwd); err != nil || got != want {
		return fmt.Errorf("process %d works in %s, not in PostgreSQL's data directory %s", pid, cwd, want)
	}
	return nil
}

// pause stops process pid (SIGSTOP) until resume: a VM paused, a process
// frozen. Its threads stop wherever they are, with its connections and
// their transactions held open. A process that is gone is no error.
func pause(pid int) error { return signalAlive(pid, unix.SIGSTOP) }

// resume lets a paused process go on (SIGCONT).
func resume(pid int) error { return signalAlive(pid, unix.SIGCONT) }

func signalAlive(pid int, sig unix.Signal) error {
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
