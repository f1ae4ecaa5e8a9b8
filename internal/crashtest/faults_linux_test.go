package crashtest

import (
	"errors"

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
