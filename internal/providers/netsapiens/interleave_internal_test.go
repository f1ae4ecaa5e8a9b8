package netsapiens

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The keeper of a subscription shared by one post-url, walked through the
// interleavings of two processes on the simulator, with writes applied at
// once or late (before the next step: a read after a write shows it as it
// was), or expiries kept to the minute (walkPBXs): the maker creates it, the adopter adopts it some time later (its
// create refused 409); each renews at half a TTL, the maker late by up to
// more than a minute; the maker runs on, is killed (before the adoption
// or after it) or closes, and the adopter lets go at some time. Checked
// at every step: (a) no process deletes the subscription while the other
// still runs (its renewal would answer 404); (b) an adopter of a killed
// maker's subscription, alone since, deletes it at its end once the
// maker's renewal was due (with writes late, once a renewal of its own
// made after that has looked). Calls are made as the keeper makes them,
// each process's clock moved to the step's time.
func TestTheSharedSubscriptionsInterleavings(t *testing.T) {
	const ttl = time.Hour
	type fate int
	const (
		runs fate = iota
		killedBefore
		killedAfter
		closes
	)
	fateName := map[fate]string{runs: "runs", killedBefore: "killed before the adoption", killedAfter: "killed after it", closes: "closes"}
	for _, pbx := range walkPBXs {
		for _, adoptAfter := range []time.Duration{5 * time.Second, 90 * time.Second, 10 * time.Minute, 29*time.Minute + 30*time.Second} {
			for _, makerLate := range []time.Duration{0, 100 * time.Second} {
				for _, f := range []fate{runs, killedBefore, killedAfter, closes} {
					for _, letGo := range []time.Duration{20 * time.Minute, 30*time.Minute + 10*time.Second, 31*time.Minute + 30*time.Second,
						45 * time.Minute, 61 * time.Minute, 95 * time.Minute} {
						name := fmt.Sprintf("%s/adopted after %v/maker %v late/maker %s/adopter lets go %v on",
							pbx, adoptAfter, makerLate, fateName[f], letGo)
						t.Run(name, func(t *testing.T) {
							walkInterleaving(t, pbx, ttl, adoptAfter, makerLate, f == killedBefore, f == killedAfter, f == closes, letGo)
						})
					}
				}
			}
		}
	}
}

func walkInterleaving(t *testing.T, pbx walkPBX, ttl, adoptAfter, makerLate time.Duration, killedBefore, killedAfter, closes bool, letGo time.Duration) {
	sim, url := pbx.serve(t)
	late := pbx.late
	t0 := time.Now().Truncate(time.Minute)
	now := t0
	clock := func() time.Time { return now }
	maker := newSubClient(t, url, ttl, 7, clock)
	adopter := newSubClient(t, url, ttl, 23, clock)
	adoptAt, letGoAt := adoptAfter, adoptAfter+letGo
	// The maker's end: killed (no delete) or closed (its delete), or none.
	end := 4 * time.Hour
	switch {
	case killedBefore:
		end = adoptAt - time.Second
	case killedAfter:
		end = adoptAt + time.Second
	case closes:
		end = adoptAt + 20*time.Minute
	}
	type step struct {
		at   time.Duration
		name string
		do   func()
	}
	var (
		steps          []step
		md, ad         *domainSub
		makerLastWrite time.Duration
		adopterLooked  time.Duration = -1 // the first renewal of the adopter that found the maker due
	)
	steps = append(steps, step{0, "the maker creates", func() {
		id, written, _, _, err := maker.subs.create("TEST")
		if err != nil {
			t.Fatalf("the maker's create: %v", err)
		}
		md = &domainSub{id: id, written: written}
	}})
	for at := ttl/2 + makerLate; at < end && at < letGoAt+ttl; at += ttl/2 + makerLate {
		steps = append(steps, step{at, "the maker renews", func() {
			if err := maker.subs.renew("TEST", md); err != nil {
				t.Fatalf("the maker, running, renews at %v: %v", now.Sub(t0), err)
			}
			makerLastWrite = now.Sub(t0)
		}})
	}
	if closes {
		steps = append(steps, step{end, "the maker closes", func() {
			if err := maker.subs.delete(context.Background(), "TEST", md); err != nil {
				t.Fatal(err)
			}
		}})
	}
	steps = append(steps, step{adoptAt, "the adopter adopts", func() {
		id, written, makerAt, adopted, err := adopter.subs.create("TEST")
		if err != nil || id != md.id || !adopted {
			t.Fatalf("the adoption: %q, adopted %v, %v; want %s adopted", id, adopted, err, md.id)
		}
		ad = &domainSub{id: id, written: written, adopted: true, makerAt: makerAt, adoptedAt: now}
	}})
	for at := adoptAt + ttl/2; at < letGoAt; at += ttl / 2 {
		steps = append(steps, step{at, "the adopter renews", func() {
			if err := adopter.subs.renew("TEST", ad); err != nil {
				t.Fatalf("the adopter, running, renews at %v: %v", now.Sub(t0), err)
			}
			if adopterLooked < 0 && now.Sub(t0) >= adoptAt+ttl/2+renewSlack {
				adopterLooked = now.Sub(t0)
			}
		}})
	}
	steps = append(steps, step{letGoAt, "the adopter lets go", func() {
		if err := adopter.subs.delete(context.Background(), "TEST", ad); err != nil {
			t.Fatal(err)
		}
	}})
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	makerRuns := func(at time.Duration) bool { return at < end }
	for _, st := range steps {
		now = t0.Add(st.at)
		if late {
			sim.ApplySubscriptionWrites() // the writes of the step before
		}
		st.do()
		if late {
			sim.ApplySubscriptionWrites()
		}
		gone := len(sim.Subscriptions()) == 0
		// (a) Nothing deleted under a process still running.
		if gone && st.name == "the adopter lets go" && makerRuns(st.at) {
			t.Fatalf("at %v the adopter deleted the subscription under its running maker", st.at)
		}
		if gone && st.name == "the maker closes" && st.at < letGoAt {
			t.Fatalf("at %v the closing maker deleted the subscription under its running adopter", st.at)
		}
	}
	// (b) A killed maker's adopter, alone since, deletes it once the
	// maker's renewal was due (it wrote last at makerLastWrite, rounded up
	// to its second: a minute more at most).
	if killedBefore || killedAfter {
		due := makerLastWrite + ttl/2 + renewSlack + time.Minute
		if late {
			// The adoption could not tell when the maker wrote last: the
			// first renewal made once it was due by the adoption's time.
			due = -1
			if adopterLooked >= 0 {
				due = adopterLooked
			}
		}
		if due >= 0 && letGoAt >= due && len(sim.Subscriptions()) != 0 {
			t.Errorf("the adopter of a subscription whose maker was killed (its last write at %v) let go at %v and left it", makerLastWrite, letGoAt)
		}
	}
}

// walkProc is a process of walkKeepers: the times (from the start) its
// watches of the domain start and stop (stop -1: watched to the end), how
// late its renewals come, and when it is killed (-1 never; otherwise its
// keeper stops there without a delete).
type walkProc struct {
	watches    [][2]time.Duration
	renewLate  time.Duration
	killedAt   time.Duration
	mark       int
	c          *Client
	d          *domainSub
	nextRenew  time.Duration
	watchIndex int
}

// walkKeepers runs the processes' keepers, as keep makes its calls, on one
// simulator until horizon, and fails at a step where a delete took the
// subscription from under a process still watching the domain.
func walkKeepers(t *testing.T, pbx walkPBX, ttl, horizon time.Duration, procs []*walkProc) {
	t.Helper()
	sim, url := pbx.serve(t)
	late := pbx.late
	t0 := time.Now().Truncate(time.Minute)
	now := t0
	for _, p := range procs {
		p.c = newSubClient(t, url, ttl, p.mark, func() time.Time { return now })
	}
	watching := func(p *walkProc, at time.Duration) bool {
		if p.killedAt >= 0 && at >= p.killedAt {
			return false
		}
		for _, w := range p.watches {
			if at >= w[0] && (w[1] < 0 || at < w[1]) {
				return true
			}
		}
		return false
	}
	// next is a process's next step: a watch starting, a renewal, or a
	// watch stopping, whichever comes first; -1 none.
	next := func(p *walkProc) (time.Duration, string) {
		if p.watchIndex >= len(p.watches) {
			return -1, ""
		}
		w := p.watches[p.watchIndex]
		at, what := w[0], "watch"
		if p.d != nil {
			at, what = p.nextRenew, "renew"
			if w[1] >= 0 && w[1] <= at {
				at, what = w[1], "let go"
			}
		}
		if p.killedAt >= 0 && at >= p.killedAt {
			return -1, ""
		}
		if at >= horizon {
			return -1, ""
		}
		return at, what
	}
	subscribe := func(p *walkProc, i int) {
		id, written, makerAt, adopted, err := p.c.subs.create("TEST")
		if err != nil {
			t.Fatalf("process %d subscribes at %v: %v", i, now.Sub(t0), err)
		}
		p.d = &domainSub{id: id, written: written, adopted: adopted, makerAt: makerAt}
		if adopted {
			p.d.adoptedAt = now
		}
		p.nextRenew = now.Sub(t0) + ttl/2 + p.renewLate
	}
	for {
		first, what, at := -1, "", time.Duration(-1)
		for i, p := range procs {
			if a, w := next(p); a >= 0 && (first < 0 || a < at) {
				first, what, at = i, w, a
			}
		}
		if first < 0 {
			return
		}
		p := procs[first]
		now = t0.Add(at)
		if late {
			sim.ApplySubscriptionWrites() // those of the steps before
		}
		switch what {
		case "watch":
			subscribe(p, first)
		case "renew":
			err := p.c.subs.renew("TEST", p.d)
			switch {
			case orchestrator.KindOf(err) == orchestrator.KindCallNotFound:
				t.Errorf("process %d, watching since %v, found the subscription gone at %v", first, p.watches[p.watchIndex][0], at)
				subscribe(p, first)
			case err != nil:
				t.Fatalf("process %d renews at %v: %v", first, at, err)
			default:
				p.nextRenew = at + ttl/2 + p.renewLate
			}
		case "let go":
			if err := p.c.subs.delete(context.Background(), "TEST", p.d); err != nil {
				t.Fatal(err)
			}
			p.d = nil
			p.watchIndex++
		}
		if late {
			sim.ApplySubscriptionWrites()
		}
		if len(sim.Subscriptions()) == 0 {
			for i, q := range procs {
				if i != first && watching(q, at) {
					t.Fatalf("at %v process %d (%s) deleted the subscription under process %d, watching", at, first, what, i)
				}
			}
		}
	}
}

// Two or three processes posting to one post-url, and an adopter watching the
// domain again after it let go (adopting again what it left), walked as
// TestTheSharedSubscriptionsInterleavings walks two: no delete takes the
// subscription from a process still watching the domain.
func TestTheSharedSubscriptionsInterleavingsOfThreeAndOfWatchesAgain(t *testing.T) {
	const ttl = time.Hour
	never := time.Duration(-1)
	for _, pbx := range walkPBXs {
		for _, makerLate := range []time.Duration{0, 100 * time.Second} {
			for _, makerEnd := range []string{"runs", "killed", "closes"} {
				for _, second := range []time.Duration{5 * time.Second, 10 * time.Minute} {
					for _, third := range []time.Duration{5 * time.Second, 20 * time.Minute, never} {
						for _, stay := range []time.Duration{20 * time.Minute, 31 * time.Minute, 61 * time.Minute} {
							for _, again := range []time.Duration{-1, 5 * time.Minute} {
								thirdName, againName := fmt.Sprintf("third %v after it", third), fmt.Sprintf("again %v on", again)
								if third < 0 {
									thirdName = "no third"
								}
								if again < 0 {
									againName = "once"
								}
								name := fmt.Sprintf("%s/maker %v late, %s/second after %v, %s/each staying %v/%s",
									pbx, makerLate, makerEnd, second, thirdName, stay, againName)
								t.Run(name, func(t *testing.T) {
									maker := &walkProc{watches: [][2]time.Duration{{0, never}}, renewLate: makerLate, killedAt: never, mark: 7}
									// Without a third, the maker's end is
									// placed as if it had come.
									bStart, cStart := second, second+max(third, 0)
									switch makerEnd {
									case "killed":
										maker.killedAt = cStart + time.Second
									case "closes":
										maker.watches[0][1] = cStart + time.Minute
									}
									b := &walkProc{watches: [][2]time.Duration{{bStart, bStart + stay}}, killedAt: never, mark: 23}
									if again >= 0 {
										b.watches = append(b.watches, [2]time.Duration{bStart + stay + again, bStart + 2*stay + again})
									}
									procs := []*walkProc{maker, b}
									if third >= 0 {
										procs = append(procs, &walkProc{watches: [][2]time.Duration{{cStart, cStart + stay}}, killedAt: never, mark: 41})
									}
									walkKeepers(t, pbx, ttl, 4*time.Hour, procs)
								})
							}
						}
					}
				}
			}
		}
	}
}

// walkPBX is how the simulator of a walk keeps subscriptions: writes
// applied at once or late (held until the walk's next step), expiries kept
// to the second or to the minute.
type walkPBX struct{ late, minutes bool }

// Not walked: a PBX both applying writes late and keeping minutes. No read
// there shows a process its own write before another's may overwrite it
// (the read after shows the expiry before, and no seconds carry the
// process's mark): a maker letting go before its first renewal takes the
// subscription for its own, and an adopter never finds its maker gone
// (the cases the invariants leave as unknowable).
var walkPBXs = []walkPBX{{}, {late: true}, {minutes: true}}

func (p walkPBX) String() string {
	return map[bool]string{false: "at once", true: "late"}[p.late] + map[bool]string{false: "", true: ", minutes"}[p.minutes]
}

func (p walkPBX) serve(t *testing.T) (*nssim.Sim, string) {
	t.Helper()
	cfg := nssim.Config{APIKeys: map[string]nssim.KeyScope{subTestKey: {Domain: "TEST"}}, SubscriptionLag: time.Hour,
		SubscriptionExpiryMinutes: p.minutes}
	if p.late {
		cfg.SubscriptionWriteDelay = time.Hour
	}
	sim := nssim.New(cfg)
	srv := httptest.NewServer(sim.APIHandler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}
