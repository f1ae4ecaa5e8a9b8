package crashtest

import (
	"context"
	"os"
	"strings"
	"testing"
)

// Two transferd processes started with one TRANSFERD_INSTANCE_ID on one
// database (two containers with one host name): the second resumes the
// name's transfer at once, as a restart after a crash does, and the
// first, still running, exits with status 1 and an error that names the
// setting. A third started under the name after the second is killed with
// SIGKILL resumes the transfer at once too, and drives it to its end.
func TestTwoProcessesUnderOneInstanceID(t *testing.T) {
	needBinaries(t)
	admin := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("set TRANSFERD_TEST_DATABASE_URL (postgres://…) to run the replica tests")
	}
	sd := sides[0].start(t)
	dbURL := freshDatabase(t, admin)
	f := flows[1] // netsapiens, attended, manual, complete
	ctx, cancel := context.WithTimeout(sd.ctx(context.Background()), caseTimeout)
	defer cancel()
	pl, err := placeCall(ctx, f, 1)
	if err != nil {
		t.Fatal(err)
	}
	env := func() []string {
		return transferdEnv(append(sd.env(t), "TRANSFERD_DATABASE_URL="+dbURL, "TRANSFERD_LEASE_TTL="+leaseTTL.String(),
			"TRANSFERD_INSTANCE_ID=twin")...)
	}
	resumed := messagePrefix("resuming the open transfers this replica owned before it restarted")

	first := startTransferd(t, "first", env())
	tr, err := createTransfer(ctx, first, f.request(pl))
	if err != nil {
		t.Fatal(err)
	}
	if tr, err = awaitTransfer(ctx, first, tr.ID, func(tr *transfer) bool { return tr.State == "consulting" || tr.terminal() }); err != nil {
		t.Fatal(err)
	} else if tr.State != "consulting" {
		t.Fatalf("the transfer ended before the second process started: %s", tr)
	}

	second := startTransferd(t, "second", env())
	// Open resumes before the process listens: the line is there already.
	if _, ok := second.logs.find(resumed); !ok {
		t.Fatalf("the second process did not resume the name's transfer as it started:\n%s", second.tail(20))
	}
	if !first.waitDead(4 * takeoverBound) {
		t.Fatalf("the first process still runs %s after the second took its name over", 4*takeoverBound)
	}
	if code := first.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("the first process exited with status %d, want 1", code)
	}
	// main prints the error run returned, as text, on its last line.
	named := func(l logLine) bool {
		return strings.HasPrefix(l.raw, "transferd: ") && strings.Contains(l.raw, `TRANSFERD_INSTANCE_ID="twin"`)
	}
	if _, ok := first.logs.find(named); !ok {
		t.Errorf("the first process's exit does not name TRANSFERD_INSTANCE_ID=\"twin\":\n%s", first.tail(10))
	}
	if second.dead() {
		t.Fatalf("the second process exited too:\n%s", second.tail(20))
	}

	// A crash and a restart under the name: resumed at once, as ever.
	if err := second.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-second.done
	third := startTransferd(t, "third", env())
	if _, ok := third.logs.find(resumed); !ok {
		t.Fatalf("the process restarted after SIGKILL did not resume the name's transfer as it started:\n%s", third.tail(20))
	}
	if err := signalTransfer(ctx, third, tr.ID, f.signal); err != nil {
		t.Fatal(err)
	}
	end, err := awaitTransfer(ctx, third, tr.ID, (*transfer).terminal)
	if err != nil {
		t.Fatal(err)
	}
	v, err := check(ctx, f, pl, end)
	(&tally{}).judge(t, f.name+" twins", f, end, v, err)
	if end.State != "completed" {
		t.Errorf("the transfer ended %s, want completed", end)
	}
	if third.dead() {
		t.Errorf("the restarted process exited:\n%s", third.tail(20))
	}
}
