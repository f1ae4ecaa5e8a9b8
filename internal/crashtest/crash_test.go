package crashtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// tally counts what every case of one test saw, for the summary line.
type tally struct {
	mu                            sync.Mutex
	cases, kills                  int
	completed, compensated        int
	restored, notRestored         int
	held, orphans, secondConsults int
	diverted                      []string // cases that did not end the flow's natural way
	takeovers                     int
	maxTakeover                   time.Duration
	// voids counts attempts a takeover before the crash point voided
	// (crashReplicas): tried again, not counted as cases.
	voids int
}

// attempt counts a case: one step boundary of one flow.
func (ty *tally) attempt() {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.cases++
}

// killed counts a process that died by SIGKILL at its crash point.
func (ty *tally) killed() {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.kills++
}

// add counts how a case ended.
func (ty *tally) add(name string, f flow, tr *transfer, v verdict) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	if v.completed {
		ty.completed++
	} else {
		ty.compensated++
		if v.restored {
			ty.restored++
		} else {
			ty.notRestored++
		}
	}
	if v.held {
		ty.held++
	}
	ty.orphans += v.orphans
	if v.consultCalls > 1 {
		ty.secondConsults += v.consultCalls - 1
	}
	if tr.State != f.natural() {
		ty.diverted = append(ty.diverted, name+" → "+tr.String())
	}
}

// voided counts an attempt voided by a takeover before its crash point.
func (ty *tally) voided() {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.voids++
}

func (ty *tally) tookOver(d time.Duration) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.takeovers++
	ty.maxTakeover = max(ty.maxTakeover, d)
}

// summary prints the line to stdout (seen with -v or on failure), to the
// test log, and appends it to $TRANSFERD_CRASH_SUMMARY if set, which CI
// prints whatever go test shows.
func (ty *tally) summary(t *testing.T, label string) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	line := fmt.Sprintf("crash test (%s): %d kills at %d step boundaries; %d completed, %d compensated "+
		"(caller restored %d, truthfully not restored %d); held callers %d, orphan consults %d, second consult calls %d",
		label, ty.kills, ty.cases, ty.completed, ty.compensated, ty.restored, ty.notRestored, ty.held, ty.orphans, ty.secondConsults)
	if ty.takeovers > 0 {
		line += fmt.Sprintf("; %d takeovers, slowest %s after the owner died", ty.takeovers, ty.maxTakeover.Round(10*time.Millisecond))
	}
	if ty.voids > 0 {
		line += fmt.Sprintf("; %d attempts tried again, voided by a lapsed heartbeat's takeover before the crash point", ty.voids)
	}
	if len(ty.diverted) > 0 {
		line += fmt.Sprintf("; %d ended otherwise than their flow's natural end", len(ty.diverted))
	}
	if t.Failed() {
		line += " [FAILED]"
	}
	fmt.Println(line)
	t.Log(line)
	for _, d := range ty.diverted {
		t.Log("  ended otherwise: " + d)
	}
	if path := os.Getenv("TRANSFERD_CRASH_SUMMARY"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, line)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Errorf("writing the summary to TRANSFERD_CRASH_SUMMARY: %v", err)
		}
	}
}

// judge reports a case's problems as test errors and counts it.
func (ty *tally) judge(t *testing.T, name string, f flow, tr *transfer, v verdict, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("reading the simulator: %v", err)
	}
	for _, p := range v.problems {
		t.Errorf("%s: %s", tr, p)
	}
	if v.consultCalls > 1 {
		t.Errorf("%s: %d consult calls were created, want at most 1", tr, v.consultCalls)
	}
	if tr.State != f.natural() {
		t.Logf("%s ended %s, not %s: allowed when the simulator agrees", name, tr, f.natural())
	}
	ty.add(name, f, tr, v)
}

// follower drives one transfer through the API: it long-polls its state and
// posts the flow's signal when the transfer waits for it.
type follower struct {
	t        *testing.T
	f        flow
	id       string
	last     *transfer
	signaled bool
}

// awaiting reports whether the flow's signal is still to be posted.
func (fw *follower) awaiting() bool { return fw.f.signal != "" && !fw.signaled }

// create posts the flow's transfer of the placed call to p, which may die
// at its crash point before it answers (the crash line names the transfer
// then). It reports whether p answered.
func (fw *follower) create(ctx context.Context, p *proc, pl placed) bool {
	fw.t.Helper()
	tr, err := createTransfer(ctx, p, fw.f.request(pl))
	var answered *statusError
	switch {
	case err == nil:
		fw.id, fw.last = tr.ID, tr
		return true
	case errors.As(err, &answered), !p.waitDead(dieTimeout):
		fw.t.Fatalf("creating the transfer: %v", err)
	}
	return false
}

// follow reads the transfer through read until it is terminal or stop is
// closed (the process that may die died), posting the signal through
// sig(). It returns false if it gave up for another reason (an error is
// reported then).
//
// A long poll (Prefer: wait) answers the next change after the request
// arrived. A transfer waiting for its client does not change, so a change
// that landed just before the poll (the target answering, the consult
// starting to ring) is seen only when the poll expires. Until the signal
// is posted the follower therefore polls with a short wait (awaitWait):
// the engine shares its provider reads between transfers and logs nothing
// per transfer while it waits, so there is no log line to wait for.
func (fw *follower) follow(ctx context.Context, read func() *proc, sig func() *proc, stop <-chan struct{}) bool {
	t := fw.t
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stop != nil {
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	stopped := func() bool {
		if stop == nil {
			return false
		}
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// A request that got no answer from a process that may die: wait for
	// its death (bounded) rather than retrying against it.
	dying := func(err error) bool {
		var answered *statusError
		if stop == nil || errors.As(err, &answered) {
			return false
		}
		return waitFor(dieTimeout, stopped)
	}
	for {
		if stopped() {
			return true
		}
		wait := 5
		if fw.awaiting() {
			wait = awaitWait
		}
		tr, err := getTransfer(ctx, read(), fw.id, wait)
		switch {
		case err == nil:
			fw.last = tr
		case stopped() || dying(err):
			return true
		default:
			t.Errorf("following %s: %v (last seen %s)", fw.id, err, fw.last)
			return false
		}
		if tr.terminal() {
			return true
		}
		if !fw.awaiting() {
			continue
		}
		if fw.f.signalDue(tr) {
			to := sig()
			err := signalTransfer(ctx, to, fw.id, fw.f.signal)
			switch {
			case err == nil:
				fw.signaled = true
				t.Logf("posted %s to %s while %s", fw.f.signal, to.name, tr)
				continue
			case isStatus(err, 409):
				// The state moved, or a signal whose answer was lost
				// with a dying process is pending: the owner's next
				// step tells.
			case stopped() || dying(err):
				return true
			default:
				t.Errorf("posting %s to %s: %v", fw.f.signal, fw.id, err)
				return false
			}
		}
	}
}

// awaitWait is the Prefer: wait, in seconds, of the follower's reads while
// the flow's signal is still to be posted: the longest a change that
// landed just before a read goes unseen.
const awaitWait = 1

// expectCrash checks that p died by SIGKILL at point, after logging the
// crash line, and counts the kill. It returns the transfer id the crash
// line names, and false when p did not die there.
func expectCrash(t *testing.T, ty *tally, p *proc, point, id string, last *transfer) (string, bool) {
	t.Helper()
	if !p.waitDead(dieTimeout) {
		t.Errorf("crash point %s: %s did not die within %s (transfer %s)", point, p.name, dieTimeout, last)
		return id, false
	}
	line, ok := p.logs.find(message(crashMessage, ""))
	switch {
	case !ok:
		t.Errorf("crash point %s: %s exited (%s) without reaching it (transfer %s)", point, p.name, p.cmd.ProcessState, last)
		return id, false
	case !p.killedBySIGKILL():
		t.Errorf("crash point %s: %s exited %s, not by SIGKILL", point, p.name, p.cmd.ProcessState)
	case line.str("point") != point:
		t.Errorf("%s crashed at %q, want %q", p.name, line.str("point"), point)
	case id != "" && line.str("transfer_id") != id:
		t.Errorf("%s crashed in transfer %s, want %s", p.name, line.str("transfer_id"), id)
	default:
		ty.killed()
	}
	return line.str("transfer_id"), line.str("transfer_id") != ""
}

// TestCrashAtEveryStepBoundary kills a single SQLite-backed transferd at
// every crash point of every flow, on every side of the simulators'
// guesses, restarts it on the same data directory and instance id, and
// checks the simulator once the transfer is terminal. The sides run in
// parallel, each with a pbxsim of its own. On a side with callbacks the
// restart also rotates the callback secret (rotated), as an operator's
// rollout of a new secret does.
func TestCrashAtEveryStepBoundary(t *testing.T) {
	needBinaries(t)
	eachSide(t, func(t *testing.T, sd side) {
		sd = sd.start(t)
		n := 0 // this side's cases: a NetSapiens agent each (agentUser)
		ty := &tally{}
		defer ty.summary(t, "sqlite, one replica restarted, "+sd.name)
		for _, f := range flows {
			t.Run(f.name, func(t *testing.T) {
				n++
				baseline(t, sd, f, n)
				for _, point := range f.points(sd) {
					n++
					t.Run(strings.ReplaceAll(point, ":", "="), func(t *testing.T) {
						crashSQLite(t, ty, sd, f, point, n)
					})
				}
			})
		}
	})
}

// baseline runs the flow once without a crash, checks it ends its natural
// way, and checks that the crash points it reached are exactly f.points(sd):
// the steps it recorded (a step made again as its Nth) and the transitions
// it logged.
func baseline(t *testing.T, sd side, f flow, n int) {
	t.Helper()
	ok := t.Run("no-crash", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(sd.ctx(context.Background()), caseTimeout)
		defer cancel()
		pl, err := placeCall(ctx, f, n)
		if err != nil {
			t.Fatal(err)
		}
		env := transferdEnv(append(sd.env(t), "TRANSFERD_DATA_DIR="+t.TempDir(), fmt.Sprintf("TRANSFERD_INSTANCE_ID=base-%d", n))...)
		p := startTransferd(t, "transferd", env)
		tr, err := createTransfer(ctx, p, f.request(pl))
		if err != nil {
			t.Fatal(err)
		}
		fw := &follower{t: t, f: f, id: tr.ID}
		same := func() *proc { return p }
		if !fw.follow(ctx, same, same, nil) {
			return
		}
		v, err := check(ctx, f, pl, fw.last)
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range v.problems {
			t.Errorf("%s: %s", fw.last, pr)
		}
		if fw.last.State != f.natural() {
			t.Errorf("without a crash the flow ended %s, want %s", fw.last, f.natural())
		}
		reached := map[string]bool{}
		made := map[string]int{}
		for _, s := range fw.last.Steps {
			if s.Name != "answered" && s.Name != "reconcile" {
				made[s.Name]++
				nth := ""
				if made[s.Name] > 1 {
					nth = fmt.Sprintf("#%d", made[s.Name])
				}
				reached[s.Name+":intent"+nth], reached[s.Name+":effect"+nth], reached[s.Name+":result"+nth] = true, true, true
			}
		}
		for _, l := range p.logs.all() {
			if l.str("transfer_id") == tr.ID && strings.HasPrefix(l.str("message"), "transfer ") && l.str("to") != "" {
				reached["state:"+l.str("to")] = true
			}
		}
		want := f.points(sd)
		var missing, extra []string
		for _, pt := range want {
			if !reached[pt] {
				missing = append(missing, pt)
			}
		}
		for pt := range reached {
			if !slices.Contains(want, pt) {
				extra = append(extra, pt)
			}
		}
		slices.Sort(extra)
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("the derived crash points do not match the run: never reached %v, reached but not listed %v", missing, extra)
		}
	})
	if !ok {
		t.FailNow()
	}
}

// crashSQLite is one case of TestCrashAtEveryStepBoundary.
func crashSQLite(t *testing.T, ty *tally, sd side, f flow, point string, n int) {
	ty.attempt()
	ctx, cancel := context.WithTimeout(sd.ctx(context.Background()), caseTimeout)
	defer cancel()
	pl, err := placeCall(ctx, f, n)
	if err != nil {
		t.Fatal(err)
	}
	env := transferdEnv(append(sd.env(t), "TRANSFERD_DATA_DIR="+t.TempDir(), fmt.Sprintf("TRANSFERD_INSTANCE_ID=crash-%d", n))...)
	p1 := startTransferd(t, "first", append(slices.Clip(env), "TRANSFERD_TEST_CRASH_AT="+point+"@"+f.provider))
	fw := &follower{t: t, f: f}
	if fw.create(ctx, p1, pl) {
		first := func() *proc { return p1 }
		if !fw.follow(ctx, first, first, p1.done) {
			return
		}
	}
	id, ok := expectCrash(t, ty, p1, point, fw.id, fw.last)
	if !ok {
		return
	}
	fw.id = id

	p2 := startTransferd(t, "restarted", rotated(env))
	// A restarted replica resumes what it owned before it listens, without
	// waiting for its old heartbeat to expire.
	cur, err := getTransfer(ctx, p2, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !cur.terminal() {
		if _, _, ok := waitLine([]*proc{p2}, message("resuming transfer", id), dieTimeout); !ok {
			t.Errorf("the restarted process did not resume %s (%s)", id, cur)
		}
	}
	second := func() *proc { return p2 }
	if !fw.follow(ctx, second, second, nil) {
		return
	}
	v, err := check(ctx, f, pl, fw.last)
	t.Logf("killed at %s, resumed: %s; steps %s", point, fw.last, stepTrail(fw.last))
	ty.judge(t, f.name+" "+point, f, fw.last, v, err)
}

// stepTrail lists a transfer's steps as name=status.
func stepTrail(tr *transfer) string {
	var parts []string
	for _, s := range tr.Steps {
		parts = append(parts, s.Name+"="+s.Status)
	}
	return strings.Join(parts, " ")
}
