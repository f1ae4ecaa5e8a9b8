package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// The adapter's visibility windows of the dial ran from Sent.Dial, when
// the dial was decided, before its intent was saved and its request sent.
// A dial answered late (a slow create, the adapter's retries, a slow save)
// left the PBX no time to list the consult it had just created: a lagging
// node's 404 or listing a moment after the answer was taken for the
// consult gone, the join's consult not listed for a refusal, the caller
// moved into the consult's session for the caller gone. The windows now
// run from the dial step's end, as the engine's do (sixty-second pass).

// dialAnsweredLate makes tr's dial, answered now (youngConsult dialled
// it now), one decided late ago: Sent.Dial then, and a dial step that
// began then and ended now (or, with unfinished, never ended: a process
// stopped in it).
func dialAnsweredLate(tr *orchestrator.Transfer, now time.Time, late time.Duration, unfinished bool) {
	tr.Sent.Dial = now.Add(-late)
	step := orchestrator.Step{Name: orchestrator.StepDial, Status: orchestrator.StepSucceeded, StartedAt: tr.Sent.Dial, EndedAt: now}
	if unfinished {
		step.Status, step.EndedAt = orchestrator.StepStarted, time.Time{}
	}
	tr.Steps = append(tr.Steps, step)
}

// hangUpConsult ends trID's consult on sim.
func hangUpConsult(t *testing.T, sim *nssim.Sim, trID string) {
	t.Helper()
	ended := 0
	for _, s := range sim.Sessions(domain) {
		if s.ByCallID == netsapiens.ConsultCallID(trID) {
			if err := sim.Hangup(s.SessionID, "term"); err != nil {
				t.Fatal(err)
			}
			ended++
		}
	}
	if ended != 1 {
		t.Fatalf("%d consult calls hung up, want 1", ended)
	}
}

// A consult seen, read 404 by a lagging node a second after a dial
// answered 8 s after it was decided (window 5 s): that was the consult
// ended, remembered, and the transfer failed target_hung_up with the
// consult hung up while the target was on it. It is unknown within the
// window of the answer, and seen once the node catches up; a consult
// that really ended is still ended a window after the answer. A dial
// step a stopped process left unfinished counts until the step timeout
// after it began.
func TestAConsultReadRightAfterALateDialAnswerIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unfinished bool
		past       time.Duration // from the answer, a window past it
	}{
		{"answered", false, 5 * time.Second},
		{"unfinished", true, orchestrator.DefaultStepTimeout - 8*time.Second + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const trID = "tr_01JDIALANSWEREDLATEXXXXXX0"
			const window = 5 * time.Second
			clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
			dialAnsweredLate(tr, clock.Now(), 8*time.Second, tc.unfinished)
			tr.Seen.Consult = true
			observe := observer(t, c, tr)
			lagging(t, sim, true)
			clock.advance(time.Second)
			if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
				t.Fatalf("a lagging node's 404 a second after a dial answered late: observation %+v, %v; want an unknown reading, not the consult ended", obs, err)
			}
			lagging(t, sim, false)
			if obs, err := observe(); err != nil || obs.Consult == orchestrator.ConsultAbsent {
				t.Fatalf("observation %+v, %v: want the consult shown once the node caught up (the 404 not remembered)", obs, err)
			}

			// The other side: a consult that really ended.
			hangUpConsult(t, sim, trID)
			if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
				t.Fatalf("observation %+v, %v: want unknown within the window of the answer", obs, err)
			}
			clock.advance(tc.past - time.Second)
			if obs, err := observe(); err != nil || obs.Consult != orchestrator.ConsultAbsent {
				t.Fatalf("observation %+v, %v: want the consult ended a window after the answer", obs, err)
			}
		})
	}
}

// The join's lookup on a lagging node's listing a second after a dial
// answered late: that was a refusal (provider rejected, the transfer
// failed); it is unknown and not sent, tried again, within the window of
// the answer, and a refusal past it.
func TestAJoinsLookupRightAfterALateDialAnswerIsTriedAgain(t *testing.T) {
	const trID = "tr_01JDIALANSWEREDLATEXXXXXX1"
	const window = 5 * time.Second
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
	dialAnsweredLate(tr, clock.Now(), 8*time.Second, false)
	lagging(t, sim, true)
	clock.advance(time.Second)
	err := c.Complete(context.Background(), tr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("join on a lagging node's listing a second after a dial answered late: %v (kind %v), want unknown and not sent",
			err, orchestrator.KindOf(err))
	}
	clock.advance(window)
	err = c.Complete(context.Background(), tr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderRejected || !errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("join a window after the answer, the consult not listed: %v (kind %v), want refused and not sent", err, orchestrator.KindOf(err))
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpTransfer {
			t.Errorf("%s %s sent without the consult's session", r.Method, r.Path)
		}
	}
}

// A join into the session of a consult whose dial was answered late (a
// PBX that keeps the consult's session): a lagging node's listing leaves
// the caller out, and its read answers 404. That was the caller gone, a
// join that took reported as the caller's hang-up; within the window of
// the answer it is unknown, and the caller is seen once the node catches
// up. A disconnect of the consult on such a listing would end the
// caller's call with the target: it is not sent.
func TestACallerJoinedRightAfterALateDialAnswerIsUnknown(t *testing.T) {
	const trID = "tr_01JDIALANSWEREDLATEXXXXXX2"
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult}, 5*time.Second)
	dialAnsweredLate(tr, clock.Now(), 8*time.Second, false)
	tr.Seen.Consult = true
	if err := c.Complete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Second)
	tr.Sent.Join = clock.Now()
	observe := observer(t, c, tr)
	lagging(t, sim, true)
	if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("observation %+v, %v: want an unknown reading, not the caller gone", obs, err)
	}
	if err := c.HangupConsult(context.Background(), tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("hang-up after the join on a lagging node's listing: %v, want an unknown reading", err)
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpDisconnect || r.Operation == nssim.OpReject {
			t.Errorf("%s %s sent on a listing that cannot show the joined call", r.Method, r.Path)
		}
	}
	lagging(t, sim, false)
	if obs, err := observe(); err != nil || obs.Caller == orchestrator.CallerGone {
		t.Fatalf("observation %+v, %v: want the caller shown once the node caught up", obs, err)
	}
}

// A join sent a second after a dial answered late may have reached a node
// that did not know the consult yet: it may be sent again (its second
// form, once a reading shows it did not take). Counted from the dial's
// decision it was not. A join sent a window after the answer is not.
func TestAJoinRightAfterALateDialAnswerMayBeSentAgain(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: "http://pbx.invalid" + basePath, APIKey: apiKey,
		VisibilityWindow: 5 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{{time.Second, true}, {5 * time.Second, false}} {
		tr := &orchestrator.Transfer{}
		dialAnsweredLate(tr, now, 8*time.Second, false)
		tr.Sent.Join = now.Add(tc.after)
		if got := c.JoinAgain(tr); got != tc.want {
			t.Errorf("a join sent %s after a dial answered 8 s after its decision: JoinAgain %v, want %v", tc.after, got, tc.want)
		}
	}
}

// End to end: the dial's create answered late (the clock moved on by
// more than the visibility window while it was in flight), the target
// answers, and the join goes out a moment after, to an API node lagging
// behind the switch that accepts it and does nothing (as in
// TestAJoinAcceptedAndIgnoredByALaggingNodeIsSentAgain). Judged from the
// dial's decision, the join was not early, was not sent again, and the
// transfer failed provider_error, the caller given back from a transfer
// that would have completed; judged from the dial's answer it is sent
// once more, and the transfer completes.
func TestATransferWhoseDialWasAnsweredLateCompletesPastAnIgnoredJoin(t *testing.T) {
	const window = 2 * time.Second
	clk := &shiftedClock{}
	simClock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	lag := lagWritesUntil(isOp(http.MethodPatch, "transfer"))
	dial := func(m, path string) bool { return m == http.MethodPost && strings.HasSuffix(path, "/calls") }
	// The clock stands still from the start to the first join's answer
	// but for the dial's lateness (see setupIgnoredJoin): the join follows
	// the dial's answer by no time, however slowly the machine runs.
	release := releaseAfter(isOp(http.MethodPatch, "transfer"), clk)
	clk.hold()
	var late sync.Once
	sim, srv := newSimServer(t, nssim.Config{Now: simClock.Now, CoreServers: []string{"core1-sim.netsapiens.test"}},
		func(sim *nssim.Sim, h http.Handler) http.Handler {
			h = release(sim, lag(sim, h))
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				if dial(r.Method, r.URL.Path) {
					// Answered past the window of the dial's decision.
					late.Do(func() { clk.shift.Store(int64(window + time.Second)) })
				}
			})
		})
	store := orchestratortest.NewSaved(memory.New())
	h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{Now: clk.Now}, func(c *orchestrator.Config) {
		c.VisibilityWindow, c.VerifyTimeout, c.Clock = window, 2*window, clk.Now
	})
	t.Cleanup(clk.release) // before the harness's shutdown, as setupIgnoredJoin's
	orig := h.placeCall(t)
	simClock.advance(time.Minute) // the caller's call is old to the lagging node
	if err := sim.SetChaos(nssim.Chaos{LaggingNodeWriteRate: 1, LaggingNodeAge: 30 * time.Second}, 0); err != nil {
		t.Fatal(err)
	}
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	var dialStep *orchestrator.Step
	for i := range tr.Steps {
		if tr.Steps[i].Name == orchestrator.StepDial {
			dialStep = &tr.Steps[i]
		}
	}
	if dialStep == nil || dialStep.EndedAt.Sub(tr.Sent.Dial) < window {
		t.Fatalf("dial step %+v, decided %s: want one answered a window after its decision", dialStep, tr.Sent.Dial)
	}
	if joins := joinsOf(h.sim); len(joins) != 2 || joins[0] != http.StatusAccepted {
		t.Errorf("joins answered %v; want the lagging node's 202, then one more", joins)
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}
