// Package storetest is the conformance suite of orchestrator.Store. Every
// implementation (memory, sqlite, postgres) runs Run against fresh stores,
// so that the orchestrator can rely on one behaviour whatever the storage
// behind it: the doc comments of orchestrator.Store are the contract, and
// each test below names the part of it that it pins down.
//
// # Time precision
//
// Transfer records round-trip exactly: every time.Time in a Transfer
// (steps, deadlines, lease, creation, update) comes back time.Equal to what
// was saved, to the nanosecond and whatever its location (the location
// itself may come back as UTC or a fixed zone). The SQL stores keep the
// record as JSON, which holds RFC 3339 times with nanoseconds.
//
// IdempotencyRecord.CreatedAt comes back at microsecond precision (the
// resolution of PostgreSQL's timestamptz), and the cut-offs that compare
// times inside the database (lease expiry in Acquire, `before` in Purge)
// are exact to the microsecond; the suite therefore uses times whole in
// microseconds wherever a store compares them.
//
// # Strings
//
// Strings round-trip exactly when they are valid UTF-8 without U+0000.
// PostgreSQL's jsonb cannot hold U+0000, so a store may save it as U+FFFD
// (it may come from a provider's evidence, and refusing to save would
// strand a caller); anything else is a failure.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Run runs the whole conformance suite. open must return a new, empty
// store for each call and arrange its cleanup with t.Cleanup; the tests
// run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	tests := []struct {
		name string
		f    func(*fixture)
	}{
		{"CreateSetsVersionOne", testCreateSetsVersionOne},
		{"CreateStoresACopy", testCreateStoresACopy},
		{"CreateDuplicateID", testCreateDuplicateID},
		{"CreateOneActivePerCall", testCreateOneActivePerCall},
		{"CreateTerminalDoesNotHoldTheCall", testCreateTerminalDoesNotHoldTheCall},
		{"CreateConcurrentSameCall", testCreateConcurrentSameCall},
		{"UpdateVersion", testUpdateVersion},
		{"UpdateStoresACopy", testUpdateStoresACopy},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"UpdateUnknown", testUpdateUnknown},
		{"GetUnknown", testGetUnknown},
		{"GetReturnsACopy", testGetReturnsACopy},
		{"RoundTrip", testRoundTrip},
		{"RoundTripStrings", testRoundTripStrings},
		{"RoundTripNUL", testRoundTripNUL},
		{"ListOrderAndPages", testListOrderAndPages},
		{"ListFilters", testListFilters},
		{"ListEmpty", testListEmpty},
		{"Acquire", testAcquire},
		{"AcquireConcurrent", testAcquireConcurrent},
		{"Renew", testRenew},
		{"Signals", testSignals},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"Purge", testPurge},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(&fixture{T: t, s: open(t), ctx: t.Context()})
		})
	}
}

// t0 has nanoseconds on purpose: records must keep them.
var t0 = time.Date(2026, 11, 21, 9, 30, 0, 123456789, time.UTC)

// fixture is one test's store and its id clock.
type fixture struct {
	*testing.T
	s   orchestrator.Store
	ctx context.Context
	n   int // ids minted so far
}

// step is the time between two minted ids: ids carry milliseconds, and a
// gap of several leaves room for a cursor between two of them.
const step = 10 * time.Millisecond

// id mints an id one step after the previous one, so that ids sort by
// creation as the store must assume.
func (f *fixture) id() string {
	f.n++
	return orchestrator.NewID(t0.Add(time.Duration(f.n) * step))
}

// transfer returns a new pending NetSapiens transfer of user's call.
func (f *fixture) transfer(user string) *orchestrator.Transfer {
	id := f.id()
	at := t0.Add(time.Duration(f.n) * step)
	return &orchestrator.Transfer{ID: id, State: orchestrator.StatePending, CreatedAt: at, UpdatedAt: at,
		Request: orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended,
			Call:   orchestrator.CallRef{Domain: "TEST", User: user},
			Target: "1010", Completion: orchestrator.CompletionAuto, ConsultTimeout: 30 * time.Second}}
}

// bwTransfer returns a new pending Bandwidth transfer of call callID.
func (f *fixture) bwTransfer(callID string) *orchestrator.Transfer {
	t := f.transfer("")
	t.Request.Provider = "bandwidth"
	t.Request.Mode = orchestrator.ModeAnnounced
	t.Request.Call = orchestrator.CallRef{CallID: callID}
	return t
}

func (f *fixture) create(t *orchestrator.Transfer) *orchestrator.Transfer {
	f.Helper()
	if err := f.s.Create(f.ctx, t); err != nil {
		f.Fatalf("Create(%s): %v", t.ID, err)
	}
	return t
}

func (f *fixture) update(t *orchestrator.Transfer) {
	f.Helper()
	if err := f.s.Update(f.ctx, t); err != nil {
		f.Fatalf("Update(%s, version %d): %v", t.ID, t.Version, err)
	}
}

// setState saves t in state st, updated at `at`.
func (f *fixture) setState(t *orchestrator.Transfer, st orchestrator.State, at time.Time) {
	f.Helper()
	t.State, t.UpdatedAt = st, at
	f.update(t)
}

func (f *fixture) get(id string) *orchestrator.Transfer {
	f.Helper()
	t, err := f.s.Get(f.ctx, id)
	if err != nil {
		f.Fatalf("Get(%s): %v", id, err)
	}
	return t
}

func (f *fixture) list(lf orchestrator.ListFilter) ([]string, bool) {
	f.Helper()
	ts, more, err := f.s.List(f.ctx, lf)
	if err != nil {
		f.Fatalf("List(%+v): %v", lf, err)
	}
	return ids(ts), more
}

func (f *fixture) acquire(owner string, now time.Time, ttl time.Duration, limit int) []*orchestrator.Transfer {
	f.Helper()
	ts, err := f.s.Acquire(f.ctx, owner, now, ttl, limit)
	if err != nil {
		f.Fatalf("Acquire(%s): %v", owner, err)
	}
	return ts
}

func (f *fixture) renew(owner string, list []string, now time.Time, ttl time.Duration) []string {
	f.Helper()
	lost, err := f.s.Renew(f.ctx, owner, list, now, ttl)
	if err != nil {
		f.Fatalf("Renew(%s): %v", owner, err)
	}
	return lost
}

// equal fails the test unless got and want are the same record: every
// field deeply equal, times compared with time.Equal.
func (f *fixture) equal(what string, got, want *orchestrator.Transfer) {
	f.Helper()
	if g, w := normalize(got), normalize(want); !reflect.DeepEqual(g, w) {
		gj, _ := json.MarshalIndent(g, "", "  ")
		wj, _ := json.MarshalIndent(w, "", "  ")
		f.Errorf("%s: the record differs\n got: %s\nwant: %s", what, gj, wj)
	}
}

// normalize returns a copy with every time in UTC and without a monotonic
// reading, so that DeepEqual compares instants, as time.Equal does.
func normalize(t *orchestrator.Transfer) *orchestrator.Transfer {
	if t == nil {
		return nil
	}
	c := t.Clone()
	for i := range c.Steps {
		c.Steps[i].StartedAt = c.Steps[i].StartedAt.UTC()
		c.Steps[i].EndedAt = c.Steps[i].EndedAt.UTC()
	}
	c.ConsultDeadline = c.ConsultDeadline.UTC()
	c.LeaseExpires = c.LeaseExpires.UTC()
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	return c
}

func ids(ts []*orchestrator.Transfer) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

func idsOf(ts ...*orchestrator.Transfer) []string { return ids(ts) }

func wantKind(t *testing.T, what string, err error, k orchestrator.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want kind %v", what, k)
	}
	if got := orchestrator.KindOf(err); got != k {
		t.Fatalf("%s: error %q has kind %v, want %v", what, err, got, k)
	}
}

func wantActive(t *testing.T, what string, err error, id string) {
	t.Helper()
	wantKind(t, what, err, orchestrator.KindConflict)
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) {
		t.Fatalf("%s: error %q does not wrap *orchestrator.ActiveTransferError", what, err)
	}
	if active.ID != id {
		t.Fatalf("%s: ActiveTransferError names %s, want %s", what, active.ID, id)
	}
}

// full returns a transfer with every field set, times in several zones
// and with nanoseconds, pointers to zero values (a false *bool), evidence,
// and both zero and non-zero times.
func (f *fixture) full() *orchestrator.Transfer {
	ist := time.FixedZone("IST", 5*3600+1800)
	ny := time.FixedZone("EST", -5*3600)
	disabled := false
	id := f.id()
	return &orchestrator.Transfer{
		ID: id,
		Request: orchestrator.Request{
			Provider: "bandwidth", Mode: orchestrator.ModeAttended,
			Call:       orchestrator.CallRef{Domain: "acme", CallID: "c-2f1e" + id, AgentCallID: "c-agent-77"},
			Target:     "+15553330000",
			Completion: orchestrator.CompletionManual, ConsultTimeout: 45*time.Second + 250*time.Millisecond + 3,
			CallerID: "+15551112222",
			Whisper: &orchestrator.Whisper{Sentence: "Transfer from support, ticket 42", FileURL: "https://media.example/w.mp3?a=1&b=2",
				Gender: "female", Locale: "en_US", Voice: "kate"},
			Diversion: &orchestrator.Diversion{Treatment: "propagate", Reason: "unconditional"},
			Recording: &orchestrator.Recording{Enabled: &disabled, FileFormat: "wav"},
		},
		State: orchestrator.StateRecovering,
		Legs: orchestrator.Legs{
			Caller:  orchestrator.LegRef{CallID: "c-2f1e", SessionID: "s-1", Server: "core1.example", BridgeID: "br-9"},
			Agent:   orchestrator.LegRef{CallID: "c-agent-77"},
			Consult: orchestrator.LegRef{CallID: "c-consult-3", SessionID: "s-2"},
		},
		Steps: []orchestrator.Step{
			{Name: orchestrator.StepLocate, Status: orchestrator.StepSucceeded, StartedAt: t0.Add(1), EndedAt: t0.Add(1500*time.Microsecond + 7).In(ist)},
			{Name: orchestrator.StepHold, Status: orchestrator.StepSucceeded, StartedAt: t0.Add(2 * time.Millisecond).In(ny), EndedAt: t0.Add(3 * time.Millisecond), Detail: "held"},
			{Name: orchestrator.StepDial, Status: orchestrator.StepFailed, StartedAt: t0.Add(4 * time.Millisecond), EndedAt: t0.Add(5*time.Second + 999),
				Detail: "target busy", Evidence: &orchestrator.Evidence{Status: 486, Code: "busy", Message: "Busy Here"}},
			{Name: orchestrator.StepUnhold, Status: orchestrator.StepStarted, StartedAt: t0.Add(6 * time.Second)}, // not ended: zero EndedAt
		},
		Undo:     []orchestrator.Undo{{Action: orchestrator.StepUnhold}, {Action: orchestrator.StepHangup, Done: true}},
		Answered: true,
		Failure: &orchestrator.Outcome{Reason: orchestrator.ReasonBusy, Detail: "the target is busy",
			Evidence: &orchestrator.Evidence{Status: 486, Code: "486", Message: "Busy Here"}},
		Signal:          orchestrator.SignalCancel,
		ConsultDeadline: t0.Add(45 * time.Second).In(ist),
		Owner:           "replica-a",
		LeaseExpires:    t0.Add(time.Minute + 17),
		CreatedAt:       t0.In(ny),
		UpdatedAt:       t0.Add(6*time.Second + 1),
	}
}

// ---- Create ----

// Create saves a new transfer with Version 1 and sets the caller's Version.
func testCreateSetsVersionOne(f *fixture) {
	t := f.transfer("1000")
	t.Version = 7 // whatever the caller had, a new record starts at 1
	f.create(t)
	if t.Version != 1 {
		f.Errorf("Create left the caller's Version at %d, want 1", t.Version)
	}
	if got := f.get(t.ID); got.Version != 1 {
		f.Errorf("stored Version %d, want 1", got.Version)
	}
}

// Create stores a copy: the caller keeps mutating its record afterwards.
func testCreateStoresACopy(f *fixture) {
	t := f.full()
	f.create(t)
	want := t.Clone()
	t.State = orchestrator.StateFailed
	t.Steps[0].Detail = "changed"
	t.Steps[2].Evidence.Message = "changed"
	t.Steps = append(t.Steps, orchestrator.Step{Name: "extra"})
	t.Undo[0].Done = true
	t.Request.Whisper.Sentence = "changed"
	*t.Request.Recording.Enabled = true
	t.Failure.Evidence.Code = "changed"
	t.Legs.Consult.CallID = "changed"
	f.equal("after mutating the created record", f.get(t.ID), want)
}

// A second Create with an existing id is a conflict that is not about the
// call, and leaves the stored record alone.
func testCreateDuplicateID(f *fixture) {
	first := f.create(f.transfer("1000"))
	dup := f.transfer("2000")
	dup.ID = first.ID
	err := f.s.Create(f.ctx, dup)
	wantKind(f.T, "Create with a duplicate id", err, orchestrator.KindConflict)
	var active *orchestrator.ActiveTransferError
	if errors.As(err, &active) {
		f.Errorf("a duplicate id is reported as an active transfer of the call: %v", err)
	}
	if dup.Version != 0 {
		f.Errorf("a failed Create set the caller's Version to %d", dup.Version)
	}
	f.equal("after the duplicate Create", f.get(first.ID), first)
}

// At most one non-terminal transfer per CallKey; the conflict names the
// active transfer; the call is free again once it is terminal.
func testCreateOneActivePerCall(f *fixture) {
	first := f.create(f.transfer("1000"))
	second := f.transfer("1000")
	err := f.s.Create(f.ctx, second)
	wantActive(f.T, "second Create for the same user", err, first.ID)
	if second.Version != 0 {
		f.Errorf("a failed Create set the caller's Version to %d", second.Version)
	}
	if _, err := f.s.Get(f.ctx, second.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		f.Errorf("the refused transfer was stored (Get: %v)", err)
	}

	// Other calls are independent: another user in the same domain, the
	// same user in another domain, and Bandwidth's calls keyed by call id.
	f.create(f.transfer("1001"))
	other := f.transfer("1000")
	other.Request.Call.Domain = "OTHER"
	f.create(other)
	bw := f.create(f.bwTransfer("c-1"))
	wantActive(f.T, "second Create for the same Bandwidth call", f.s.Create(f.ctx, f.bwTransfer("c-1")), bw.ID)

	// Still active in a non-terminal state other than pending.
	f.setState(first, orchestrator.StateRecovering, t0.Add(time.Second))
	wantActive(f.T, "Create while the first is recovering", f.s.Create(f.ctx, f.transfer("1000")), first.ID)

	f.setState(first, orchestrator.StateCompleted, t0.Add(2*time.Second))
	third := f.create(f.transfer("1000"))
	wantActive(f.T, "Create while the third is active", f.s.Create(f.ctx, f.transfer("1000")), third.ID)
	f.setState(third, orchestrator.StateCancelled, t0.Add(3*time.Second))
	fourth := f.create(f.transfer("1000"))
	f.setState(fourth, orchestrator.StateFailed, t0.Add(4*time.Second))
	f.create(f.transfer("1000"))
}

// A transfer saved already terminal never holds its call.
func testCreateTerminalDoesNotHoldTheCall(f *fixture) {
	done := f.transfer("1000")
	done.State = orchestrator.StateFailed
	f.create(done)
	f.create(f.transfer("1000"))
}

// Of concurrent Creates for the same call exactly one succeeds; the others
// name the winner.
func testCreateConcurrentSameCall(f *fixture) {
	const n = 16
	ts := make([]*orchestrator.Transfer, n)
	for i := range ts {
		ts[i] = f.transfer("1000")
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ts {
		wg.Go(func() { errs[i] = f.s.Create(f.ctx, ts[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				f.Fatalf("two concurrent Creates for one call succeeded: %s and %s", ts[winner].ID, ts[i].ID)
			}
			winner = i
		}
	}
	if winner < 0 {
		f.Fatalf("no concurrent Create succeeded: %v", errs)
	}
	for i, err := range errs {
		if i != winner {
			wantActive(f.T, "losing concurrent Create", err, ts[winner].ID)
		}
	}
	got, _ := f.list(orchestrator.ListFilter{Limit: 100})
	if !slices.Equal(got, []string{ts[winner].ID}) {
		f.Errorf("stored %v, want only the winner %s", got, ts[winner].ID)
	}
}

// ---- Update ----

// Update with the stored version saves and increments; a stale version is
// ErrVersionConflict and changes nothing.
func testUpdateVersion(f *fixture) {
	t := f.create(f.transfer("1000"))
	stale := t.Clone()

	t.State = orchestrator.StateHolding
	t.Steps = append(t.Steps, orchestrator.Step{Name: orchestrator.StepHold, Status: orchestrator.StepStarted, StartedAt: t0.Add(time.Second)})
	t.UpdatedAt = t0.Add(time.Second)
	f.update(t)
	if t.Version != 2 {
		f.Errorf("Update left the caller's Version at %d, want 2", t.Version)
	}
	if !t.UpdatedAt.Equal(t0.Add(time.Second)) {
		f.Errorf("Update changed UpdatedAt to %v: it is the caller's (the engine's clock)", t.UpdatedAt)
	}
	f.equal("after Update", f.get(t.ID), t)
	f.update(t)
	if t.Version != 3 {
		f.Errorf("second Update left Version at %d, want 3", t.Version)
	}

	stale.State = orchestrator.StateFailed
	err := f.s.Update(f.ctx, stale)
	if !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Fatalf("Update with a stale version: %v, want ErrVersionConflict", err)
	}
	if stale.Version != 1 {
		f.Errorf("a failed Update changed the caller's Version to %d", stale.Version)
	}
	f.equal("after the stale Update", f.get(t.ID), t)

	ahead := t.Clone()
	ahead.Version = t.Version + 1 // a version the store never issued
	if err := f.s.Update(f.ctx, ahead); !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Errorf("Update with a version from the future: %v, want ErrVersionConflict", err)
	}
}

// Update stores a copy.
func testUpdateStoresACopy(f *fixture) {
	t := f.create(f.full())
	t.Steps = append(t.Steps, orchestrator.Step{Name: orchestrator.StepHangup, Status: orchestrator.StepStarted, StartedAt: t0.Add(time.Hour)})
	f.update(t)
	want := t.Clone()
	t.Steps[4].Status = orchestrator.StepFailed
	t.Request.Diversion.Reason = "changed"
	t.Failure.Reason = orchestrator.ReasonInternal
	f.equal("after mutating the updated record", f.get(t.ID), want)
}

// Of concurrent Updates from the same version exactly one succeeds.
func testUpdateConcurrent(f *fixture) {
	t := f.create(f.transfer("1000"))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := t.Clone()
		c.Request.Target = strconv.Itoa(i)
		wg.Go(func() { errs[i] = f.s.Update(f.ctx, c) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, orchestrator.ErrVersionConflict):
			f.Errorf("losing concurrent Update: %v, want ErrVersionConflict", err)
		}
	}
	if ok != 1 {
		f.Errorf("%d concurrent Updates from version 1 succeeded, want exactly 1", ok)
	}
	if got := f.get(t.ID); got.Version != 2 {
		f.Errorf("stored Version %d after the race, want 2", got.Version)
	}
}

func testUpdateUnknown(f *fixture) {
	t := f.transfer("1000")
	t.Version = 1
	wantKind(f.T, "Update of an unknown transfer", f.s.Update(f.ctx, t), orchestrator.KindNotFound)
}

// ---- Get ----

func testGetUnknown(f *fixture) {
	_, err := f.s.Get(f.ctx, f.id())
	wantKind(f.T, "Get of an unknown id", err, orchestrator.KindNotFound)
	_, err = f.s.Get(f.ctx, "not-an-id")
	wantKind(f.T, "Get of a malformed id", err, orchestrator.KindNotFound)
}

func testGetReturnsACopy(f *fixture) {
	t := f.create(f.full())
	got := f.get(t.ID)
	got.Steps[0].Name = "changed"
	got.Steps[2].Evidence.Code = "changed"
	got.Request.Whisper.Voice = "changed"
	*got.Request.Recording.Enabled = true
	got.Failure.Evidence.Status = 500
	got.Undo = nil
	f.equal("after mutating a read record", f.get(t.ID), t)

	listed, _, err := f.s.List(f.ctx, orchestrator.ListFilter{Limit: 10})
	if err != nil || len(listed) != 1 {
		f.Fatalf("List: %v, %v", listed, err)
	}
	listed[0].Steps[1].Detail = "changed"
	f.equal("after mutating a listed record", f.get(t.ID), t)
}

// ---- Round trip ----

// Every field survives Create, Update, Get, List and Acquire exactly.
func testRoundTrip(f *fixture) {
	t := f.create(f.full())
	f.equal("Get after Create", f.get(t.ID), t)

	// Swap every optional field: set ones cleared, cleared ones set.
	enabled := true
	t.State = orchestrator.StateCancelled
	t.Request.Whisper = nil
	t.Request.Recording = &orchestrator.Recording{Enabled: &enabled}
	t.Request.Diversion = &orchestrator.Diversion{Treatment: "none"}
	t.Legs.Caller = orchestrator.LegRef{}
	t.Steps[3].EndedAt = t0.Add(7*time.Second + 3)
	t.Steps[3].Status = orchestrator.StepSucceeded
	t.Steps = append(t.Steps, orchestrator.Step{Name: orchestrator.StepHangup, Status: orchestrator.StepFailed,
		StartedAt: t0.Add(8 * time.Second), Evidence: &orchestrator.Evidence{Code: "only-code"}})
	t.Undo[0].Done = true
	t.Answered = false
	t.Failure = nil
	t.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonCancelled, CallerRestored: true, Detail: "cancelled by the client",
		Evidence: &orchestrator.Evidence{Status: 200}}
	t.Signal = orchestrator.SignalNone
	t.ConsultDeadline = time.Time{}
	t.Owner = ""
	t.LeaseExpires = time.Time{}
	t.UpdatedAt = t0.Add(9*time.Second + 5)
	f.update(t)
	got := f.get(t.ID)
	f.equal("Get after Update", got, t)
	if !got.ConsultDeadline.IsZero() || !got.LeaseExpires.IsZero() || !got.Steps[4].EndedAt.IsZero() {
		f.Errorf("zero times came back non-zero: %v %v %v", got.ConsultDeadline, got.LeaseExpires, got.Steps[4].EndedAt)
	}
	if got.Request.Recording.Enabled == nil || !*got.Request.Recording.Enabled {
		f.Errorf("Recording.Enabled came back %v, want true", got.Request.Recording.Enabled)
	}

	// Empty slices stay empty, nil ones nil.
	bare := f.transfer("1000")
	bare.Steps, bare.Undo = []orchestrator.Step{}, nil
	f.create(bare)
	f.equal("Get of a bare record", f.get(bare.ID), bare)

	listed, _, err := f.s.List(f.ctx, orchestrator.ListFilter{Limit: 10})
	if err != nil || len(listed) != 2 {
		f.Fatalf("List: %v, %v", ids(listed), err)
	}
	f.equal("List", listed[0], bare)
	f.equal("List", listed[1], t)

	now := t0.Add(time.Hour).Truncate(time.Microsecond)
	acq := f.acquire("replica-b", now, 30*time.Second, 10)
	if len(acq) != 1 {
		f.Fatalf("Acquire returned %v, want %s", ids(acq), bare.ID)
	}
	bare.Owner, bare.LeaseExpires, bare.Version = "replica-b", now.Add(30*time.Second), bare.Version+1
	f.equal("Acquire", acq[0], bare)
	f.equal("Get after Acquire", f.get(bare.ID), bare)
}

// Strings with quotes, escapes, markup and non-ASCII come back unchanged.
func testRoundTripStrings(f *fixture) {
	t := f.transfer(`user "quoted" \ back\slash \u0041 <b>&amp;</b> ünï ☎ 𝄞`)
	t.Request.Target = "line1\nline2\ttab\r\x01\x1f"
	t.Legs.Consult.CallID = strings.Repeat("x", 10_000) // long values
	f.create(t)
	f.equal("Get", f.get(t.ID), t)
	if err := f.s.Create(f.ctx, f.transfer(t.Request.Call.User)); orchestrator.KindOf(err) != orchestrator.KindConflict {
		f.Errorf("the call key of an unusual user did not hold the call: %v", err)
	}
}

// A U+0000 in provider evidence never prevents saving the transfer.
func testRoundTripNUL(f *fixture) {
	t := f.create(f.transfer("1000"))
	t.Steps = append(t.Steps, orchestrator.Step{Name: orchestrator.StepHold, Status: orchestrator.StepFailed,
		StartedAt: t0, Evidence: &orchestrator.Evidence{Message: "bad\x00body"}})
	if err := f.s.Update(f.ctx, t); err != nil {
		f.Fatalf("Update with U+0000 in evidence: %v", err)
	}
	got := f.get(t.ID).Steps[0].Evidence.Message
	if got != "bad\x00body" && got != "bad\uFFFDbody" {
		f.Errorf("evidence came back %q", got)
	}
}

// ---- List ----

// List is newest first; Limit, the After cursor and `more` page through
// everything exactly once.
func testListOrderAndPages(f *fixture) {
	var all []string
	for i := range 7 {
		all = append(all, f.create(f.transfer(strconv.Itoa(1000+i))).ID)
	}
	slices.Reverse(all) // newest first
	got, more := f.list(orchestrator.ListFilter{Limit: 100})
	if !slices.Equal(got, all) || more {
		f.Errorf("List all = %v, %v; want %v, false", got, more, all)
	}
	got, more = f.list(orchestrator.ListFilter{Limit: 7})
	if !slices.Equal(got, all) || more {
		f.Errorf("List with Limit = count: %v, %v; want %v, false", got, more, all)
	}
	var paged []string
	after := ""
	for range 10 {
		got, more = f.list(orchestrator.ListFilter{Limit: 3, After: after})
		paged = append(paged, got...)
		if !more {
			break
		}
		if len(got) != 3 {
			f.Fatalf("page %v has more=true but only %d items", got, len(got))
		}
		after = got[len(got)-1]
	}
	if !slices.Equal(paged, all) {
		f.Errorf("paging by 3 = %v, want %v", paged, all)
	}
	got, more = f.list(orchestrator.ListFilter{Limit: 2, After: all[4]})
	if !slices.Equal(got, all[5:]) || more {
		f.Errorf("last page = %v, %v; want %v, false", got, more, all[5:])
	}
	// The cursor need not exist (a purged transfer): it is a position.
	between := orchestrator.NewID(t0.Add(4*step + step/2))
	got, _ = f.list(orchestrator.ListFilter{Limit: 100, After: between})
	if !slices.Equal(got, all[3:]) {
		f.Errorf("List after a missing id = %v, want %v", got, all[3:])
	}
	got, more = f.list(orchestrator.ListFilter{Limit: 5, After: all[len(all)-1]})
	if len(got) != 0 || more {
		f.Errorf("List after the oldest = %v, %v; want nothing", got, more)
	}
}

// List filters by states and provider, together with Limit and After.
func testListFilters(f *fixture) {
	ns1 := f.create(f.transfer("1000"))
	bw2 := f.create(f.bwTransfer("c-2"))
	ns3 := f.create(f.transfer("1003"))
	bw4 := f.create(f.bwTransfer("c-4"))
	ns5 := f.create(f.transfer("1005"))
	bw6 := f.create(f.bwTransfer("c-6"))
	f.setState(bw2, orchestrator.StateHolding, t0.Add(time.Second))
	f.setState(ns3, orchestrator.StateCompleted, t0.Add(time.Second))
	f.setState(bw4, orchestrator.StateFailed, t0.Add(time.Second))
	f.setState(ns5, orchestrator.StateConsulting, t0.Add(time.Second))

	cases := []struct {
		f    orchestrator.ListFilter
		want []*orchestrator.Transfer
		more bool
	}{
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StatePending}}, []*orchestrator.Transfer{bw6, ns1}, false},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateCompleted, orchestrator.StateFailed}}, []*orchestrator.Transfer{bw4, ns3}, false},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateCancelled}}, nil, false},
		{orchestrator.ListFilter{Provider: "bandwidth"}, []*orchestrator.Transfer{bw6, bw4, bw2}, false},
		{orchestrator.ListFilter{Provider: "BandWidth"}, []*orchestrator.Transfer{bw6, bw4, bw2}, false}, // case-insensitive
		{orchestrator.ListFilter{Provider: "other"}, nil, false},
		{orchestrator.ListFilter{Provider: "netsapiens", States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateConsulting}},
			[]*orchestrator.Transfer{ns5, ns1}, false},
		{orchestrator.ListFilter{Provider: "bandwidth", Limit: 2}, []*orchestrator.Transfer{bw6, bw4}, true},
		{orchestrator.ListFilter{Provider: "bandwidth", Limit: 2, After: bw4.ID}, []*orchestrator.Transfer{bw2}, false},
		{orchestrator.ListFilter{Provider: "bandwidth", Limit: 1, After: bw6.ID}, []*orchestrator.Transfer{bw4}, true},
		// more is about matching transfers only: ns1 follows bw2 but does not match.
		{orchestrator.ListFilter{Provider: "bandwidth", Limit: 1, After: bw4.ID}, []*orchestrator.Transfer{bw2}, false},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding}, Limit: 2},
			[]*orchestrator.Transfer{bw6, bw2}, true},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding}, After: ns5.ID},
			[]*orchestrator.Transfer{bw2, ns1}, false},
	}
	for _, c := range cases {
		if c.f.Limit == 0 {
			c.f.Limit = 100
		}
		got, more := f.list(c.f)
		if want := idsOf(c.want...); !slices.Equal(got, want) || more != c.more {
			f.Errorf("List(%+v) = %v, %v; want %v, %v", c.f, got, more, want, c.more)
		}
	}
}

func testListEmpty(f *fixture) {
	got, more := f.list(orchestrator.ListFilter{Limit: 10})
	if len(got) != 0 || more {
		f.Errorf("List of an empty store = %v, %v", got, more)
	}
}

// ---- Leases ----

// Acquire claims non-terminal transfers that are unowned or whose lease
// expired, oldest first, up to limit; it sets Owner and LeaseExpires and
// bumps Version so that the previous owner's next Update fails.
func testAcquire(f *fixture) {
	now := t0.Add(time.Hour).Truncate(time.Microsecond)
	unowned := f.create(f.transfer("1"))
	live := f.transfer("2")
	live.Owner, live.LeaseExpires = "other", now.Add(time.Minute)
	f.create(live)
	expired := f.transfer("3")
	expired.Owner, expired.LeaseExpires = "other", now.Add(-time.Second)
	f.create(expired)
	done := f.create(f.transfer("4"))
	f.setState(done, orchestrator.StateCompleted, t0)
	doneExpired := f.transfer("5")
	doneExpired.Owner, doneExpired.LeaseExpires = "other", now.Add(-time.Hour)
	f.create(doneExpired)
	f.setState(doneExpired, orchestrator.StateFailed, t0)
	unowned2 := f.create(f.transfer("6"))
	mineExpired := f.transfer("7")
	mineExpired.Owner, mineExpired.LeaseExpires = "self", now.Add(-time.Millisecond)
	f.create(mineExpired)
	f.setState(mineExpired, orchestrator.StateRecovering, t0)

	if got := f.acquire("self", now, 30*time.Second, 0); len(got) != 0 {
		f.Errorf("Acquire with limit 0 claimed %v", ids(got))
	}
	oldExpired := f.get(expired.ID)

	first := f.acquire("self", now, 30*time.Second, 2)
	if want := idsOf(unowned, expired); !slices.Equal(ids(first), want) {
		f.Fatalf("Acquire(limit 2) = %v, want %v (oldest first)", ids(first), want)
	}
	rest := f.acquire("self", now, 30*time.Second, 10)
	if want := idsOf(unowned2, mineExpired); !slices.Equal(ids(rest), want) {
		f.Fatalf("second Acquire = %v, want %v", ids(rest), want)
	}
	for _, t := range append(first, rest...) {
		stored := f.get(t.ID)
		if t.Owner != "self" || !t.LeaseExpires.Equal(now.Add(30*time.Second)) {
			f.Errorf("claimed %s has owner %q until %v, want self until %v", t.ID, t.Owner, t.LeaseExpires, now.Add(30*time.Second))
		}
		f.equal("Get of a claimed transfer", stored, t)
	}
	for _, c := range []struct {
		before *orchestrator.Transfer
		after  *orchestrator.Transfer
	}{{unowned, first[0]}, {expired, first[1]}, {unowned2, rest[0]}, {mineExpired, rest[1]}} {
		if c.after.Version != c.before.Version+1 {
			f.Errorf("claimed %s has Version %d, want %d", c.after.ID, c.after.Version, c.before.Version+1)
		}
	}
	for _, t := range []*orchestrator.Transfer{live, done, doneExpired} {
		f.equal("a transfer Acquire must not claim", f.get(t.ID), t)
	}

	// The previous owner lost the record: its next save fails.
	oldExpired.State = orchestrator.StateHolding
	if err := f.s.Update(f.ctx, oldExpired); !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Errorf("the previous owner's Update after a takeover: %v, want ErrVersionConflict", err)
	}
	claimed := first[1]
	claimed.State = orchestrator.StateHolding
	f.update(claimed)

	if got := f.acquire("third", now.Add(time.Second), time.Minute, 10); len(got) != 0 {
		f.Errorf("Acquire while every lease is live claimed %v", ids(got))
	}
	later := f.acquire("third", now.Add(45*time.Second), time.Minute, 10)
	if want := idsOf(unowned, expired, unowned2, mineExpired); !slices.Equal(ids(later), want) {
		f.Errorf("Acquire after the leases expired = %v, want %v", ids(later), want)
	}
	f.equal("a live lease", f.get(live.ID), live)
}

// Two concurrent Acquires never claim the same transfer.
func testAcquireConcurrent(f *fixture) {
	const transfers, owners = 24, 6
	for i := range transfers {
		f.create(f.transfer(strconv.Itoa(i)))
	}
	now := t0.Add(time.Hour).Truncate(time.Microsecond)
	claims := make([][]string, owners)
	errs := make([]error, owners)
	var wg sync.WaitGroup
	for o := range owners {
		wg.Go(func() {
			for {
				ts, err := f.s.Acquire(f.ctx, "owner-"+strconv.Itoa(o), now, time.Hour, 3)
				if err != nil {
					errs[o] = err
					return
				}
				if len(ts) == 0 {
					return
				}
				claims[o] = append(claims[o], ids(ts)...)
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for o, c := range claims {
		if errs[o] != nil {
			f.Errorf("owner-%d: Acquire: %v", o, errs[o])
		}
		for _, id := range c {
			if prev, ok := seen[id]; ok {
				f.Errorf("%s claimed by owner-%d and owner-%d", id, prev, o)
			}
			seen[id] = o
			if got := f.get(id); got.Owner != "owner-"+strconv.Itoa(o) || got.Version != 2 {
				f.Errorf("%s stored with owner %q version %d, want owner-%d version 2", id, got.Owner, got.Version, o)
			}
		}
	}
	if len(seen) != transfers {
		f.Errorf("%d transfers claimed, want %d", len(seen), transfers)
	}
}

// Renew extends only the owner's leases, keeps versions, reports the ids
// the owner lost (taken over, terminal, unknown), and keeps a lease that
// expired but was not taken over.
func testRenew(f *fixture) {
	now := t0.Add(time.Hour).Truncate(time.Microsecond)
	const ttl = 10 * time.Second
	a, b, c, d := f.transfer("a"), f.transfer("b"), f.transfer("c"), f.transfer("d")
	for _, t := range []*orchestrator.Transfer{a, b, c, d} {
		f.create(t)
	}
	mine := f.acquire("A", now, ttl, 10)
	if len(mine) != 4 {
		f.Fatalf("Acquire = %v", ids(mine))
	}
	all := ids(mine)
	versions := map[string]int64{}
	for _, t := range mine {
		versions[t.ID] = t.Version
	}
	checkLease := func(id, owner string, until time.Time) {
		f.Helper()
		got := f.get(id)
		if got.Owner != owner || !got.LeaseExpires.Equal(until) {
			f.Errorf("%s: owner %q until %v, want %q until %v", id, got.Owner, got.LeaseExpires, owner, until)
		}
		if want, ok := versions[id]; ok && got.Version != want {
			f.Errorf("%s: Version %d, want %d (Renew must not change it)", id, got.Version, want)
		}
	}

	if lost := f.renew("A", all, now.Add(5*time.Second), ttl); len(lost) != 0 {
		f.Errorf("Renew of live leases lost %v", lost)
	}
	for _, id := range all {
		checkLease(id, "A", now.Add(15*time.Second))
	}
	if lost := f.renew("A", nil, now, ttl); len(lost) != 0 {
		f.Errorf("Renew of nothing lost %v", lost)
	}

	// c ends; b's lease runs out and B takes it over.
	cs := mine[2]
	f.setState(cs, orchestrator.StateCompleted, now)
	versions[c.ID] = cs.Version
	if lost := f.renew("A", idsOf(a, d), now.Add(12*time.Second), ttl); len(lost) != 0 {
		f.Errorf("Renew of a and d lost %v", lost)
	}
	if got := f.acquire("B", now.Add(16*time.Second), ttl, 10); !slices.Equal(ids(got), idsOf(b)) {
		f.Fatalf("B's Acquire = %v, want %v", ids(got), idsOf(b))
	}
	versions[b.ID]++

	unknown := f.id()
	lost := f.renew("A", []string{a.ID, b.ID, c.ID, unknown, d.ID}, now.Add(17*time.Second), ttl)
	slices.Sort(lost)
	want := []string{b.ID, c.ID, unknown}
	slices.Sort(want)
	if !slices.Equal(lost, want) {
		f.Errorf("Renew lost %v, want %v (taken over, terminal, unknown)", lost, want)
	}
	checkLease(a.ID, "A", now.Add(27*time.Second))
	checkLease(d.ID, "A", now.Add(27*time.Second))
	checkLease(b.ID, "B", now.Add(26*time.Second))
	if got := f.renew("stranger", idsOf(a), now.Add(17*time.Second), time.Hour); !slices.Equal(got, idsOf(a)) {
		f.Errorf("a stranger's Renew of a = %v, want it lost", got)
	}
	checkLease(a.ID, "A", now.Add(27*time.Second))

	// d's lease expires, nobody takes it, A renews it: A keeps it.
	if lost := f.renew("A", idsOf(d), now.Add(40*time.Second), ttl); len(lost) != 0 {
		f.Errorf("Renew of an expired, untaken lease lost %v", lost)
	}
	checkLease(d.ID, "A", now.Add(50*time.Second))
	if got := f.acquire("B", now.Add(41*time.Second), ttl, 10); !slices.Equal(ids(got), idsOf(a, b)) {
		f.Errorf("B's Acquire after A renewed d = %v, want a and b (expired), not d", ids(got))
	}
}

// ---- Signals ----

func testSignals(f *fixture) {
	t := f.create(f.transfer("1000"))
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("TakeSignal with none pending = %q, %v; want none", sig, err)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalComplete); err != nil {
		f.Fatalf("PutSignal: %v", err)
	}
	wantKind(f.T, "PutSignal while one is pending", f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel), orchestrator.KindConflict)
	wantKind(f.T, "PutSignal of the same signal while pending", f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalComplete), orchestrator.KindConflict)
	wantKind(f.T, "PutSignal for an unknown transfer", f.s.PutSignal(f.ctx, f.id(), orchestrator.SignalCancel), orchestrator.KindNotFound)

	other := f.create(f.transfer("2000"))
	if err := f.s.PutSignal(f.ctx, other.ID, orchestrator.SignalCancel); err != nil {
		f.Fatalf("PutSignal on another transfer: %v", err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalComplete {
		f.Errorf("TakeSignal = %q, %v; want complete", sig, err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("second TakeSignal = %q, %v; want none (take clears)", sig, err)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel); err != nil {
		f.Errorf("PutSignal after the take: %v", err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalCancel {
		f.Errorf("TakeSignal = %q, %v; want cancel", sig, err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, other.ID); err != nil || sig != orchestrator.SignalCancel {
		f.Errorf("TakeSignal of the other transfer = %q, %v; want cancel", sig, err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, f.id()); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("TakeSignal of an unknown transfer = %q, %v; want none", sig, err)
	}
	// The signal lives beside the record: saving the record keeps it.
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel); err != nil {
		f.Fatal(err)
	}
	f.setState(t, orchestrator.StateHolding, t0.Add(time.Second))
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalCancel {
		f.Errorf("TakeSignal after an Update = %q, %v; want cancel", sig, err)
	}
}

// ---- Idempotency ----

func reserve(f *fixture, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool) {
	f.Helper()
	got, ok, err := f.s.ReserveIdempotency(f.ctx, rec)
	if err != nil {
		f.Fatalf("ReserveIdempotency(%s %s): %v", rec.Scope, rec.Key, err)
	}
	return got, ok
}

func equalIdem(f *fixture, what string, got, want orchestrator.IdempotencyRecord) {
	f.Helper()
	same := got.Scope == want.Scope && got.Key == want.Key && got.RequestHash == want.RequestHash &&
		got.CreatedAt.Equal(want.CreatedAt) && (got.Response == nil) == (want.Response == nil)
	if same && got.Response != nil {
		g, w := got.Response, want.Response
		same = g.Status == w.Status && g.Location == w.Location && string(g.Body) == string(w.Body)
	}
	if !same {
		f.Errorf("%s: got %s, want %s", what, fmtIdem(got), fmtIdem(want))
	}
}

func fmtIdem(r orchestrator.IdempotencyRecord) string {
	s := fmt.Sprintf("{%q %q hash %q created %v", r.Scope, r.Key, r.RequestHash, r.CreatedAt)
	if r.Response != nil {
		s += fmt.Sprintf(" response %d %q %q", r.Response.Status, r.Response.Location, r.Response.Body)
	}
	return s + "}"
}

func testIdempotency(f *fixture) {
	at := t0.Truncate(time.Microsecond)
	rec := orchestrator.IdempotencyRecord{Scope: "POST /v1/transfers", Key: "key-1", RequestHash: "sha256:aa", CreatedAt: at}
	got, ok := reserve(f, rec)
	if !ok {
		f.Fatalf("the first Reserve returned false")
	}
	equalIdem(f, "first Reserve", got, rec)

	again := orchestrator.IdempotencyRecord{Scope: rec.Scope, Key: rec.Key, RequestHash: "sha256:bb", CreatedAt: at.Add(time.Second)}
	got, ok = reserve(f, again)
	if ok {
		f.Errorf("a second Reserve of the same key returned true")
	}
	equalIdem(f, "second Reserve (in progress)", got, rec)

	// Scopes are independent, and so are keys.
	other := orchestrator.IdempotencyRecord{Scope: "POST /v1/transfers/tr_X/cancel", Key: rec.Key, RequestHash: "h", CreatedAt: at}
	if _, ok := reserve(f, other); !ok {
		f.Errorf("the same key in another scope was not reserved")
	}
	if _, ok := reserve(f, orchestrator.IdempotencyRecord{Scope: rec.Scope, Key: "key-2", CreatedAt: at}); !ok {
		f.Errorf("another key in the same scope was not reserved")
	}

	resp := orchestrator.IdempotentResponse{Status: 202, Location: "/v1/transfers/tr_01", Body: []byte("{\"id\":\"tr_01\"}\x00\xff\xfe binary")}
	if err := f.s.CompleteIdempotency(f.ctx, rec.Scope, rec.Key, resp); err != nil {
		f.Fatalf("CompleteIdempotency: %v", err)
	}
	resp.Body[0] = 'X' // the caller reuses its buffer: the store kept its own copy
	got, ok = reserve(f, again)
	if ok {
		f.Errorf("Reserve of a completed key returned true")
	}
	want := rec
	want.Response = &orchestrator.IdempotentResponse{Status: 202, Location: resp.Location, Body: []byte("{\"id\":\"tr_01\"}\x00\xff\xfe binary")}
	equalIdem(f, "Reserve of a completed key", got, want)

	empty := orchestrator.IdempotentResponse{Status: 204}
	if err := f.s.CompleteIdempotency(f.ctx, other.Scope, other.Key, empty); err != nil {
		f.Fatalf("CompleteIdempotency with an empty body: %v", err)
	}
	got, _ = reserve(f, other)
	if got.Response == nil || got.Response.Status != 204 || got.Response.Location != "" || len(got.Response.Body) != 0 {
		f.Errorf("an empty response came back as %s", fmtIdem(got))
	}

	wantKind(f.T, "CompleteIdempotency of an unknown key",
		f.s.CompleteIdempotency(f.ctx, rec.Scope, "nope", resp), orchestrator.KindNotFound)

	if err := f.s.DeleteIdempotency(f.ctx, rec.Scope, rec.Key); err != nil {
		f.Fatalf("DeleteIdempotency: %v", err)
	}
	if got, ok = reserve(f, again); !ok {
		f.Errorf("Reserve after Delete returned false")
	}
	equalIdem(f, "Reserve after Delete", got, again)
	if err := f.s.DeleteIdempotency(f.ctx, rec.Scope, "never-reserved"); err != nil {
		f.Errorf("DeleteIdempotency of an unknown key: %v", err)
	}
	if _, ok := reserve(f, other); ok {
		f.Errorf("Delete of one scope's key freed another scope's")
	}
}

// Of concurrent Reserves of one key exactly one gets true; the others get
// the winner's record.
func testIdempotencyConcurrent(f *fixture) {
	const n = 16
	type result struct {
		rec orchestrator.IdempotencyRecord
		ok  bool
		err error
	}
	res := make([]result, n)
	at := t0.Truncate(time.Microsecond)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, ok, err := f.s.ReserveIdempotency(f.ctx, orchestrator.IdempotencyRecord{
				Scope: "POST /v1/transfers", Key: "k", RequestHash: strconv.Itoa(i), CreatedAt: at.Add(time.Duration(i) * time.Microsecond)})
			res[i] = result{r, ok, err}
		})
	}
	wg.Wait()
	winner := -1
	for i, r := range res {
		if r.err != nil {
			f.Fatalf("concurrent Reserve: %v", r.err)
		}
		if r.ok {
			if winner >= 0 {
				f.Fatalf("Reserves %d and %d both returned true", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		f.Fatalf("no concurrent Reserve returned true")
	}
	for i, r := range res {
		if i != winner && (r.rec.RequestHash != strconv.Itoa(winner) || !r.rec.CreatedAt.Equal(at.Add(time.Duration(winner)*time.Microsecond))) {
			f.Errorf("losing Reserve %d returned %s, want the winner's (%d)", i, fmtIdem(r.rec), winner)
		}
	}
}

// ---- Purge ----

// Purge deletes terminal transfers updated before the cut-off with their
// signals, and idempotency records created before it; nothing else.
func testPurge(f *fixture) {
	cutoff := t0.Add(24 * time.Hour).Truncate(time.Microsecond)
	oldDone := f.create(f.transfer("1"))
	f.setState(oldDone, orchestrator.StateCompleted, cutoff.Add(-time.Minute))
	if err := f.s.PutSignal(f.ctx, oldDone.ID, orchestrator.SignalCancel); err != nil {
		f.Fatal(err)
	}
	oldCancelled := f.create(f.transfer("2"))
	f.setState(oldCancelled, orchestrator.StateCancelled, cutoff.Add(-time.Microsecond))
	oldFailed := f.create(f.bwTransfer("c-3"))
	f.setState(oldFailed, orchestrator.StateFailed, cutoff.Add(-100*time.Hour))
	atCutoff := f.create(f.transfer("4"))
	f.setState(atCutoff, orchestrator.StateFailed, cutoff)
	newDone := f.create(f.transfer("5"))
	f.setState(newDone, orchestrator.StateCompleted, cutoff.Add(time.Minute))
	oldActive := f.create(f.transfer("6"))
	f.setState(oldActive, orchestrator.StateConsulting, cutoff.Add(-time.Hour))
	if err := f.s.PutSignal(f.ctx, oldActive.ID, orchestrator.SignalComplete); err != nil {
		f.Fatal(err)
	}
	oldRecovering := f.create(f.transfer("7"))
	f.setState(oldRecovering, orchestrator.StateRecovering, cutoff.Add(-time.Hour))

	idem := func(key string, at time.Time) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: "s", Key: key, RequestHash: "h", CreatedAt: at}
	}
	for _, r := range []orchestrator.IdempotencyRecord{idem("old", cutoff.Add(-time.Second)), idem("at", cutoff), idem("new", cutoff.Add(time.Second))} {
		reserve(f, r)
	}
	if err := f.s.CompleteIdempotency(f.ctx, "s", "old", orchestrator.IdempotentResponse{Status: 201}); err != nil {
		f.Fatal(err)
	}

	n, err := f.s.Purge(f.ctx, cutoff)
	if err != nil {
		f.Fatalf("Purge: %v", err)
	}
	if n != 3 {
		f.Errorf("Purge deleted %d transfers, want 3", n)
	}
	for _, t := range []*orchestrator.Transfer{oldDone, oldCancelled, oldFailed} {
		if _, err := f.s.Get(f.ctx, t.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			f.Errorf("purged %s: Get = %v, want not found", t.ID, err)
		}
	}
	for _, t := range []*orchestrator.Transfer{atCutoff, newDone, oldActive, oldRecovering} {
		f.equal("a transfer Purge must keep", f.get(t.ID), t)
	}
	got, _ := f.list(orchestrator.ListFilter{Limit: 100})
	if want := idsOf(oldRecovering, oldActive, newDone, atCutoff); !slices.Equal(got, want) {
		f.Errorf("List after Purge = %v, want %v", got, want)
	}
	// The purged transfer's signal went with it: a record saved again
	// under its id starts with none.
	again := f.transfer("1")
	again.ID = oldDone.ID
	f.create(again)
	if sig, err := f.s.TakeSignal(f.ctx, again.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("TakeSignal on a purged id = %q, %v; want none", sig, err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, oldActive.ID); err != nil || sig != orchestrator.SignalComplete {
		f.Errorf("a kept transfer's signal = %q, %v; want complete", sig, err)
	}

	if _, ok := reserve(f, idem("old", cutoff)); !ok {
		f.Errorf("an idempotency key created before the cut-off survived Purge")
	}
	for _, key := range []string{"at", "new"} {
		if _, ok := reserve(f, idem(key, cutoff)); ok {
			f.Errorf("idempotency key %q created at or after the cut-off was purged", key)
		}
	}
	if n, err := f.s.Purge(f.ctx, cutoff); err != nil || n != 0 {
		f.Errorf("second Purge = %d, %v; want 0", n, err)
	}
}

func testPing(f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		f.Errorf("Ping: %v", err)
	}
}
