package crashtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaseTTL is the replicas' TRANSFERD_LEASE_TTL: short, so that a dead
// replica's transfers are taken over quickly. Ownership is a heartbeat per
// replica that its transfers refer to.
const leaseTTL = 2 * time.Second

// takeoverBound guards against a takeover that does not happen. Issue #4
// asks for "within TRANSFERD_LEASE_TTL", and by design it comes within 3/4
// of it (a replica's heartbeat runs leaseTTL/2 past its last renewal, and
// survivors look for expired heartbeats every leaseTTL/4). The summary
// reports the slowest takeover measured; the test fails only past twice
// the TTL, because a wall-clock threshold close to the design would make
// the test flaky on a loaded machine (go test -race on 2 cores), and how
// fast is for measurements, not for pass/fail.
const takeoverBound = 2 * leaseTTL

// pgPoints are the crash points the replica test covers for a flow on side
// sd: the representative set of issue #4, or every point with
// TRANSFERD_CRASH_ALL_POINTS=1.
func pgPoints(f flow, sd side) []string {
	all := f.points(sd)
	if os.Getenv("TRANSFERD_CRASH_ALL_POINTS") != "" {
		return all
	}
	want := []string{"hold:effect", "dial:effect", "state:consulting"}
	switch {
	case f.cancels():
		// state:recovering: the owner took the cancel another replica put
		// in the store, and died.
		want = append(want, "state:recovering", "hangup_consult:effect", "unhold:intent")
	case f.join:
		want = append(want, "state:completing", "transfer:effect")
	default:
		want = append(want, "state:completing", "state:completed")
	}
	return slices.DeleteFunc(all, func(p string) bool { return !slices.Contains(want, p) })
}

// TestCrashWithReplicasOnPostgres runs three replicas on one PostgreSQL
// database, kills the one that owns a transfer at a crash point, and
// checks that another takes it over within the lease and finishes or
// compensates it. Signals of manual flows go to a replica that does not
// own the transfer, so they reach the owner only through the store. On
// the side with provider callbacks each replica has a public URL of its
// own: the providers keep posting to the dead one's, and the survivor
// must know the calls it made by what follows the base of their URLs.
func TestCrashWithReplicasOnPostgres(t *testing.T) {
	needBinaries(t)
	admin := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("set TRANSFERD_TEST_DATABASE_URL (postgres://…) to run the replica crash tests")
	}
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			// In parallel, each side with its own pbxsim and database (a
			// replica takes over any dead replica's transfers in its
			// database, and must reach their simulator). Not all at once,
			// as eachSide runs the SQLite sides: each case here needs a
			// replica's heartbeat renewed within the test's short TTL, and
			// the load of three sides' replicas beside the other packages'
			// tests let heartbeats lapse and another replica take the
			// transfer over before its owner reached the crash point.
			t.Parallel()
			sd := sd.start(t)
			dbURL := freshDatabase(t, admin)
			n := 1000
			ty := &tally{}
			defer ty.summary(t, "postgres, three replicas, lease "+leaseTTL.String()+", "+sd.name)
			for _, f := range flows {
				t.Run(f.name, func(t *testing.T) {
					for _, point := range pgPoints(f, sd) {
						n++
						t.Run(strings.ReplaceAll(point, ":", "="), func(t *testing.T) {
							crashReplicas(t, ty, dbURL, sd, f, point, n)
						})
					}
				})
			}
		})
	}
}

// freshDatabase creates a database of its own for this run on the server
// of admin and returns its URL; it is dropped when the test ends.
// databases numbers the databases this process made: sides make theirs
// at once.
var databases atomic.Int64

func freshDatabase(t *testing.T, admin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("TRANSFERD_TEST_DATABASE_URL: %v", err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connecting to TRANSFERD_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := fmt.Sprintf("transferd_crashtest_%d_%d_%d", time.Now().UnixNano(), os.Getpid(), databases.Add(1))
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("dropping database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// about matches the log lines about a transfer.
func about(id string) func(logLine) bool {
	return func(l logLine) bool { return l.str("transfer_id") == id }
}

// drives matches the lines a replica logs about transfer id as its owner:
// every line about it but the API's audit line, which whatever replica
// accepts a signal logs (the test posts them to one that does not own the
// transfer). Taken for the owner's, r1's audit line of a cancel posted
// before r0 died was "the takeover", measured before the death.
func drives(id string) func(logLine) bool {
	return func(l logLine) bool { return about(id)(l) && l.str("audit") == "" }
}

// replicaAttempts is how many times a case is tried while each attempt is
// voided by a takeover before its crash point (drivenEarly).
const replicaAttempts = 3

// crashReplicas is one case of TestCrashWithReplicasOnPostgres. On a
// loaded machine r0's heartbeat (leaseTTL/2) may lapse before r0 reaches
// the crash point: a survivor then claims the transfer from a live r0,
// which drops it and never dies there. That is the lease working as
// designed, not the case failing, but the case is about the owner dying at
// its point, which it no longer tests: the attempt is said so in the log,
// counted in the summary, and the case tried again with new replicas. A
// longer lease would keep the case true under load only by making every
// takeover wait for it.
func crashReplicas(t *testing.T, ty *tally, dbURL string, sd side, f flow, point string, n int) {
	ty.attempt()
	for attempt := 1; ; attempt++ {
		if !crashReplicasOnce(t, ty, dbURL, sd, f, point, n, attempt) {
			return
		}
		ty.voided()
		if attempt == replicaAttempts {
			t.Errorf("crash point %s: every one of %d attempts was voided by a takeover before r0 reached it", point, attempt)
			return
		}
	}
}

// crashReplicasOnce is one attempt of a case. It reports whether a
// takeover before the crash point voided it (the transfer has ended then,
// and the attempt's replicas are dead).
func crashReplicasOnce(t *testing.T, ty *tally, dbURL string, sd side, f flow, point string, n, attempt int) (voided bool) {
	ctx, cancel := context.WithTimeout(sd.ctx(context.Background()), caseTimeout)
	defer cancel()
	pl, err := placeCall(ctx, f, n)
	if err != nil {
		t.Fatal(err)
	}
	// A retried attempt's replicas have names of their own: a process
	// started under a dead one's name would take its transfers over at
	// once, as a restart does.
	name := fmt.Sprintf("pg%d", n)
	if attempt > 1 {
		name = fmt.Sprintf("pg%d-%d", n, attempt)
	}
	// With callbacks, each replica has a public URL of its own (sd.env
	// picks a new address at each call), as the README advises for
	// NetSapiens' subscription posts: the providers keep posting to r0's
	// once it is dead, and its calls' callbackUrls name r0, not the
	// survivor that takes them over.
	env := func(i int, more ...string) []string {
		return transferdEnv(append(append(sd.env(t), "TRANSFERD_DATABASE_URL="+dbURL, "TRANSFERD_LEASE_TTL="+leaseTTL.String(),
			fmt.Sprintf("TRANSFERD_INSTANCE_ID=%s-r%d", name, i)), more...)...)
	}
	// r0 owns the transfer (it receives the POST) and dies at the point.
	// With callbacks the fleet is in the middle of a rotation of the
	// callback secret (README: its second step rolling out): r0 and r2
	// still sign with the old secret and accept the new one, r1 signs with
	// the new one and accepts the old. Whichever survivor takes r0's
	// transfer over must know its Bandwidth legs by r0's tokens.
	r0 := startTransferdAsync(t, "r0", accepting(env(0, "TRANSFERD_TEST_CRASH_AT="+point+"@"+f.provider)))
	r1 := startTransferdAsync(t, "r1", rotated(env(1)))
	r2 := startTransferdAsync(t, "r2", accepting(env(2)))
	for _, p := range []*proc{r0, r1, r2} {
		p.waitListening(t)
	}
	survivors := []*proc{r1, r2}
	fw := &follower{t: t, f: f}

	// While r0 owns the transfer, r1 is read and signalled.
	other := func() *proc { return r1 }
	if fw.create(ctx, r0, pl) {
		if !fw.follow(ctx, other, other, r0.done) {
			return false
		}
		// The transfer has ended or r0 died: whichever survivor drove it
		// early has logged so by now, or does in a moment (its lines are
		// read as they come; r0 crashed, or goes on to, otherwise).
		var p *proc
		var l logLine
		early := false
		waitFor(dieTimeout, func() bool {
			p, l, early = drivenEarly(survivors, fw.id, r0)
			return early || r0.dead()
		})
		if early {
			lapse := "r0 has logged nothing of its heartbeat yet"
			if hb, ok := r0.logs.find(heartbeatTrouble); ok {
				lapse = fmt.Sprintf("r0 logged %q", hb.str("message"))
			}
			t.Logf("attempt %d of %d voided: %s drove %s (%q) before r0 reached %s: it claimed the transfer from a live r0 "+
				"whose heartbeat had lapsed, as a loaded machine's stall does (%s); the case is about the owner dying at its point, "+
				"so the transfer is followed to its end and the case tried again with new replicas",
				attempt, replicaAttempts, p.name, fw.id, l.str("message"), point, lapse)
			if !fw.last.terminal() && !fw.follow(ctx, other, other, nil) {
				return false
			}
			// The attempt tests no crash point, but a takeover from a
			// live owner all the same: the simulator must show nobody
			// held, no consult left and at most one consult call, as
			// after any case (not counted in the tally, which counts the
			// crash points' cases).
			v, err := check(ctx, f, pl, fw.last)
			if err != nil {
				t.Errorf("reading the simulator after the voided attempt: %v", err)
			}
			for _, pr := range v.problems {
				t.Errorf("voided attempt %d: %s: %s", attempt, fw.last, pr)
			}
			if v.consultCalls > 1 {
				t.Errorf("voided attempt %d: %s: %d consult calls were created, want at most 1", attempt, fw.last, v.consultCalls)
			}
			for _, p := range []*proc{r0, r1, r2} {
				p.kill()
			}
			return true
		}
	}
	id, ok := expectCrash(t, ty, r0, point, fw.id, fw.last)
	if !ok {
		return false
	}
	fw.id = id

	// A survivor takes the transfer over once r0's lease expired, unless
	// r0 died right after saving it terminal.
	cur, err := getTransfer(ctx, r1, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !cur.terminal() {
		// Only the owner logs lines about a transfer: the first one a
		// survivor logs ("resuming transfer", or its first provider request
		// for a transfer still pending) is the takeover.
		owner, line, ok := waitLine(survivors, drives(id), 2*takeoverBound)
		if !ok {
			t.Fatalf("no survivor took %s over within %s of r0's death (%s)", id, 2*takeoverBound, cur)
		}
		took := line.at.Sub(r0.diedAt)
		ty.tookOver(took)
		t.Logf("%s took %s over %s after r0 died", owner.name, id, took.Round(time.Millisecond))
		if took > takeoverBound {
			t.Errorf("%s took %s over %s after r0 died, more than %s", owner.name, id, took, takeoverBound)
		}
	}
	// Read and signal through the survivor that does not own the
	// transfer: the signal must reach the owner through the store.
	notOwner := func() *proc {
		owner, at := r2, time.Time{}
		for _, p := range survivors {
			for _, l := range p.logs.all() {
				if drives(id)(l) && l.at.After(at) {
					owner, at = p, l.at
				}
			}
		}
		if owner == r1 {
			return r2
		}
		return r1
	}
	if !fw.follow(ctx, notOwner, notOwner, nil) {
		return false
	}
	v, err := check(ctx, f, pl, fw.last)
	t.Logf("killed r0 at %s, taken over: %s; steps %s", point, fw.last, stepTrail(fw.last))
	ty.judge(t, f.name+" "+point, f, fw.last, v, err)
	return false
}

// drivenEarly returns a replica of procs that drove transfer id (drives)
// before owner reached its crash point: while owner lived, or before its
// crash line. Only a replica that claimed the transfer from a live owner
// (whose heartbeat lapsed) does; one that takes over a dead owner's
// transfer does so a heartbeat after its death at the soonest.
func drivenEarly(procs []*proc, id string, owner *proc) (*proc, logLine, bool) {
	crash, crashed := owner.logs.find(message(crashMessage, ""))
	for _, p := range procs {
		if l, ok := p.logs.find(drives(id)); ok && (!crashed || l.at.Before(crash.at)) {
			return p, l, true
		}
	}
	return nil, logLine{}, false
}

// heartbeatTrouble matches what a replica logs when its heartbeat could
// not be renewed in time.
func heartbeatTrouble(l logLine) bool {
	return messagePrefix("renewing the heartbeat failed")(l) || messagePrefix("this replica's heartbeat had expired")(l)
}
