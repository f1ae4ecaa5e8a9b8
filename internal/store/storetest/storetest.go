// Package storetest is the conformance suite of orchestrator.Store. Every
// implementation (memory, sqlite, postgres) runs Run against fresh stores,
// so that the orchestrator can rely on one behaviour whatever the storage
// behind it: the doc comments of orchestrator.Store are the contract, and
// each test below names the part of it that it pins down.
//
// # Time precision
//
// Transfer records round-trip exactly: every time.Time in a Transfer
// (steps, sent effects, deadlines, cleanup, creation, update) comes back time.Equal to what
// was saved, to the nanosecond and whatever its location (the location
// itself may come back as UTC or a fixed zone). The SQL stores keep the
// record as JSON, which holds RFC 3339 times with nanoseconds.
//
// IdempotencyRecord.CreatedAt comes back at microsecond precision (the
// resolution of PostgreSQL's timestamptz), and the cut-offs that compare
// times inside the database (heartbeat expiry in Heartbeat, Claim and
// SettleIdempotency; `before` in Purge) are exact to the microsecond; the suite therefore uses times whole in
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
	"sync/atomic"
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
		{"CreateWithItsContextEnded", testCreateWithItsContextEnded},
		{"VerdictsOutliveTheContext", testVerdictsOutliveTheContext},
		{"SignalVerdictsOutliveTheContext", testSignalVerdictsOutliveTheContext},
		{"CreateOneActivePerCall", testCreateOneActivePerCall},
		{"CreateTerminalDoesNotHoldTheCall", testCreateTerminalDoesNotHoldTheCall},
		{"CreateConcurrentSameCall", testCreateConcurrentSameCall},
		{"CreateRefusesACallItsLastTransferHolds", testCreateRefusesACallItsLastTransferHolds},
		{"CreateRefusesACallAnEarlierIDHolds", testCreateRefusesACallAnEarlierIDHolds},
		{"CreateOneActivePerCallPerTenant", testCreateOneActivePerCallPerTenant},
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
		{"ListTenantFilters", testListTenantFilters},
		{"EventsWrittenWithSaves", testEventsWrittenWithSaves},
		{"EventsAtomic", testEventsAtomic},
		{"EventsFilter", testEventsFilter},
		{"LastEventPos", testLastEventPos},
		{"EventsPurge", testEventsPurge},
		{"Heartbeat", testHeartbeat},
		{"Release", testRelease},
		{"Peers", testPeers},
		{"HandedOver", testHandedOver},
		{"Superseded", testSuperseded},
		{"SavesCarryTheToken", testSavesCarryTheToken},
		{"Claim", testClaim},
		{"ClaimSaysUnowned", testClaimSaysUnowned},
		{"ClaimFollowsOpen", testClaimFollowsOpen},
		{"ClaimConcurrent", testClaimConcurrent},
		{"Signals", testSignals},
		{"SignalAtVersion", testSignalAtVersion},
		{"UpdateLooksForSignal", testUpdateLooksForSignal},
		{"UpdateLooksForSignalInABatch", testUpdateLooksForSignalInABatch},
		{"Signalled", testSignalled},
		{"Owned", testOwned},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"CreateLinksIdempotency", testCreateLinksIdempotency},
		{"CreateHoldsItsReservation", testCreateHoldsItsReservation},
		{"CreateRacesSettle", testCreateRacesSettle},
		{"SettleIdempotency", testSettleIdempotency},
		{"SettleIdempotencyOwnBefore", testSettleIdempotencyOwnBefore},
		{"Purge", testPurge},
		{"PurgeLimit", testPurgeLimit},
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

// heartbeat writes the heartbeat of the one process under owner's name
// (its token is owner's own), and reports whether it had expired.
func (f *fixture) heartbeat(owner string, now time.Time, ttl time.Duration) bool {
	f.Helper()
	return f.beat(owner, token(owner), now, ttl, false)
}

// beat writes owner's heartbeat as the process with token does.
func (f *fixture) beat(owner, tok string, now time.Time, ttl time.Duration, take bool) bool {
	f.Helper()
	expired, err := f.s.Heartbeat(f.ctx, owner, tok, now, ttl, take)
	if err != nil {
		f.Fatalf("Heartbeat(%s, %s): %v", owner, tok, err)
	}
	return expired
}

// token is the token of the one process under owner's name in the tests
// that have one.
func token(owner string) string { return "token-" + owner }

func (f *fixture) claim(owner string, now time.Time, own bool, limit int) []*orchestrator.Transfer {
	f.Helper()
	ts, err := f.s.Claim(f.ctx, owner, "", now, own, limit)
	if err != nil {
		f.Fatalf("Claim(%s): %v", owner, err)
	}
	return ts
}

func (f *fixture) signalled(owner string) []string {
	f.Helper()
	got, err := f.s.Signalled(f.ctx, owner)
	if err != nil {
		f.Fatalf("Signalled(%s): %v", owner, err)
	}
	slices.Sort(got) // the contract names no order
	return got
}

// never is the ownBefore of a SettleIdempotency that settles none of
// the caller's own reservations.
var never time.Time

func (f *fixture) settle(owner string, now, ownBefore time.Time) int {
	f.Helper()
	n, err := f.s.SettleIdempotency(f.ctx, owner, now, ownBefore)
	if err != nil {
		f.Fatalf("SettleIdempotency(%s): %v", owner, err)
	}
	return n
}

func (f *fixture) purge(before time.Time, limit int) int {
	f.Helper()
	n, err := f.s.Purge(f.ctx, before, limit)
	if err != nil {
		f.Fatalf("Purge(limit %d): %v", limit, err)
	}
	return n
}

// owned creates a pending transfer of user's call owned by owner.
func (f *fixture) owned(user, owner string) *orchestrator.Transfer {
	f.Helper()
	t := f.transfer(user)
	t.Owner = owner
	return f.create(t)
}

// end saves t terminal in state st at `at`, owing a cleanup or not.
func (f *fixture) end(t *orchestrator.Transfer, st orchestrator.State, cleanup bool, at time.Time) {
	f.Helper()
	t.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonCancelled, Verified: !cleanup}
	t.Cleanup = nil
	if cleanup {
		t.Cleanup = &orchestrator.Cleanup{Until: at.Add(time.Minute), Reason: "the provider is unreadable"}
	}
	f.setState(t, st, at)
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
	c.StateAt = c.StateAt.UTC()
	for _, p := range []*time.Time{&c.Sent.Hold, &c.Sent.Dial, &c.Sent.Join, &c.Sent.JoinFirst, &c.Sent.Hangup, &c.Sent.Unhold} {
		*p = p.UTC()
	}
	if c.Cleanup != nil {
		c.Cleanup.Until = c.Cleanup.Until.UTC()
	}
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	// What Claim found, not stored: testClaimSaysUnowned checks it.
	c.Unowned = false
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
		Sent: orchestrator.Sent{Hold: t0.Add(2 * time.Millisecond).In(ny), Dial: t0.Add(4*time.Millisecond + 1),
			Unhold: t0.Add(6 * time.Second).In(ist)}, // Join and Hangup never sent: zero
		Seen:     orchestrator.Seen{Held: true},
		Answered: true,
		Failure: &orchestrator.Outcome{Reason: orchestrator.ReasonBusy, Detail: "the target is busy",
			Evidence: &orchestrator.Evidence{Status: 486, Code: "486", Message: "Busy Here"}},
		Signal:          orchestrator.SignalCancel,
		ConsultDeadline: t0.Add(45 * time.Second).In(ist),
		StateAt:         t0.Add(6 * time.Second).In(ny),
		Cleanup:         &orchestrator.Cleanup{Until: t0.Add(2*time.Minute + 9).In(ny), Reason: "consult leg may still appear"},
		Owner:           "replica-a",
		// No reservation exists for this key: Create links nothing.
		IdempotencyScope: "POST /v1/transfers",
		IdempotencyKey:   "key-" + id,
		CreatedAt:        t0.In(ny),
		UpdatedAt:        t0.Add(6*time.Second + 1),
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
	t.Cleanup.Reason = "changed"
	t.Sent.Hold = t.Sent.Hold.Add(time.Second)
	t.Request.Whisper.Sentence = "changed"
	*t.Request.Recording.Enabled = true
	t.Failure.Evidence.Code = "changed"
	t.Legs.Consult.CallID = "changed"
	f.equal("after mutating the created record", f.get(t.ID), want)
}

// A create whose context has ended before the store took it (the API's
// deadline for a create, spent on the checks before the save) is either
// saved (a store that does not look at the context), or refused as
// ErrNotSaved: the store knows that nothing was written. Found by review:
// the SQL stores answered such a create with an error of no kind, which
// says its save is unknown; the engine then looked for the transfer in
// the background for minutes, and the client was told the store's answer
// was lost.
func testCreateWithItsContextEnded(f *fixture) {
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	t := f.transfer("1000")
	Emit(t, orchestrator.EventCreated, "", "")
	err := f.s.Create(ctx, t)
	if err == nil {
		clearOutbox(t)
		f.equal("a create saved although its context had ended", f.get(t.ID), t)
		return
	}
	if !errors.Is(err, orchestrator.ErrNotSaved) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		f.Errorf("Create with its context ended = %v (kind %v); want success, or ErrNotSaved of kind unavailable", err, orchestrator.KindOf(err))
	}
	if _, err := f.s.Get(f.ctx, t.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		f.Errorf("Get of the create refused before the store took it = %v, want not found", err)
	}
	// Nor does it hold the call.
	f.create(f.transfer("1000"))
}

// endsOnceAsked is a context that ends as soon as it has first been asked
// whether it has ended (Err): a request's deadline that passes right after
// the store took its save (each store looks at the context once, before
// it queues the save for its group commit; the memory store never does).
// A PutSignal of a SignalTaker looks at it while it waits for what it
// writes with, and says when it took the call.
type endsOnceAsked struct {
	context.Context
	cancel context.CancelFunc
	asked  atomic.Bool
}

func endingOnceAsked(parent context.Context) *endsOnceAsked {
	ctx, cancel := context.WithCancel(parent)
	return &endsOnceAsked{Context: ctx, cancel: cancel}
}

func (c *endsOnceAsked) Err() error {
	if !c.asked.Swap(true) {
		c.cancel() // ended from here on: this answer was the last "not yet"
		return nil
	}
	return c.Context.Err()
}

// Done is the channel of the context: asked first (a database driver
// watching the context, where the store did not look at it first), it
// ends the context as Err does, so that what the store runs on it after
// it took the call meets an ended context, as it would if the deadline
// passed then.
func (c *endsOnceAsked) Done() <-chan struct{} {
	if !c.asked.Swap(true) {
		c.cancel()
	}
	return c.Context.Done()
}

// A verdict the store reached on a save it took stands when the caller's
// context ends meanwhile (the API's deadline for a create, passing while
// the group commit writes it): a create refused for its call is a conflict
// naming the call's transfer, and an update at a stale version a version
// conflict, as with the context live. Found by review: PostgreSQL read why
// a create had inserted nothing, and whether an update's transfer existed,
// on the caller's ended context, and answered with that read's failure, an
// error of no kind, which says the save is unknown: the engine looked for
// the refused transfer in the background for minutes, and the client was
// told that the store's answer was lost instead of that the call had a
// transfer.
func testVerdictsOutliveTheContext(f *fixture) {
	first := f.create(f.transfer("1000"))
	second := f.transfer("1000")
	Emit(second, orchestrator.EventCreated, "", "")
	wantActive(f.T, "a second Create of the call, its context ended once the store took it",
		f.s.Create(endingOnceAsked(f.ctx), second), first.ID)
	if _, err := f.s.Get(f.ctx, second.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		f.Errorf("the refused transfer was stored (Get: %v)", err)
	}

	stale := first.Clone()
	first.State = orchestrator.StateHolding
	f.update(first)
	stale.State = orchestrator.StateFailed
	err := f.s.Update(endingOnceAsked(f.ctx), stale)
	if !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Errorf("Update at a stale version, its context ended once the store took it: %v, want ErrVersionConflict", err)
	}
	f.equal("after the stale Update", f.get(first.ID), first)
}

// A signal the store refused is refused, with its reason's kind, when the
// caller's context ends once the store took it (a /complete or /cancel
// whose request ended meanwhile): a signal pending, a version saved over,
// no such transfer. Found by review: both SQL stores read why their insert
// had inserted nothing on the caller's context, and answered with that
// read's failure, an error of no kind (unknown: the API's 503 saying the
// store did not answer) where the signal was refused.
//
// A store that waits for what it writes with (a connection, SQLite's
// writer) on the caller's context, so that a caller who leaves stops the
// wait, tells when it took the call (SignalTaker); the context ends then.
// The others' ends once asked (endsOnceAsked), as their one look at it is
// the take.
func testSignalVerdictsOutliveTheContext(f *fixture) {
	t := f.create(f.transfer("1000"))
	v := t.Version
	f.update(t)
	endingOnceTaken := func() context.Context {
		taker, ok := f.s.(SignalTaker)
		if !ok {
			return endingOnceAsked(f.ctx)
		}
		ctx, cancel := context.WithCancel(f.ctx)
		taker.OnSignalTaken(func() {
			taker.OnSignalTaken(nil)
			cancel()
		})
		return ctx
	}
	err := f.s.PutSignal(endingOnceTaken(), t.ID, orchestrator.SignalCancel, v)
	if !errors.Is(err, orchestrator.ErrStale) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		f.Errorf("PutSignal at a version saved over, its context ended once the store took it: %v (kind %v), want ErrStale", err, orchestrator.KindOf(err))
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, t.Version); err != nil {
		f.Fatalf("PutSignal at the stored version: %v", err)
	}
	err = f.s.PutSignal(endingOnceTaken(), t.ID, orchestrator.SignalComplete, t.Version)
	if orchestrator.KindOf(err) != orchestrator.KindConflict || errors.Is(err, orchestrator.ErrStale) {
		f.Errorf("PutSignal while one is pending, its context ended once the store took it: %v (kind %v), want a pending signal's conflict", err, orchestrator.KindOf(err))
	}
	if sig, err := f.s.PeekSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalCancel {
		f.Errorf("after the refused PutSignal, PeekSignal = %q, %v; want the first, %q", sig, err, orchestrator.SignalCancel)
	}
	wantKind(f.T, "PutSignal for an unknown transfer, its context ended once the store took it",
		f.s.PutSignal(endingOnceTaken(), f.id(), orchestrator.SignalCancel, 1), orchestrator.KindNotFound)
}

// SignalTaker is a store whose PutSignal waits for what it writes with on
// the caller's context, and then no longer looks at it: OnSignalTaken
// sets a function it calls once it has taken the call (nil: none), for the
// tests of what comes after.
type SignalTaker interface {
	OnSignalTaken(func())
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
	// The same again with the same call: the transfer is not its own
	// call's last transfer to be refused for.
	again := first.Clone()
	again.Version = 0
	err = f.s.Create(f.ctx, again)
	wantKind(f.T, "Create again of a stored transfer", err, orchestrator.KindConflict)
	if errors.As(err, &active) {
		f.Errorf("a Create again of a stored transfer is reported as an active transfer of its call: %v", err)
	}
	f.equal("after the Create again", f.get(first.ID), first)
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

// A transfer saved already terminal never holds its call; a call's
// active transfer refuses it all the same.
func testCreateTerminalDoesNotHoldTheCall(f *fixture) {
	done := f.transfer("1000")
	done.State = orchestrator.StateFailed
	f.create(done)
	active := f.create(f.transfer("1000"))
	late := f.transfer("1000")
	late.State = orchestrator.StateFailed
	wantActive(f.T, "a create of an ended transfer of a call with an active one", f.s.Create(f.ctx, late), active.ID)
}

// A create is refused while the call's last transfer holds it
// (Transfer.HoldsCall, which the SQL stores evaluate in SQL): active, or
// ended with an unverified outcome (or none) and a cleanup obligation.
// A verified outcome's tombstone, or an end with nothing owed, leaves the
// call free; a transfer of the call under another provider or tenant
// holds nothing.
func testCreateRefusesACallItsLastTransferHolds(f *fixture) {
	owing := func(tr *orchestrator.Transfer, outcome *orchestrator.Outcome, at time.Time) {
		tr.Outcome = outcome
		tr.Cleanup = &orchestrator.Cleanup{Until: at.Add(time.Minute), Reason: "the provider is unreadable"}
		f.setState(tr, orchestrator.StateFailed, at)
	}
	unverified := func(tr *orchestrator.Transfer, at time.Time) {
		owing(tr, &orchestrator.Outcome{Reason: orchestrator.ReasonTimeout}, at)
	}
	cases := []struct {
		name           string
		byCallID       bool
		last           func(tr *orchestrator.Transfer, at time.Time) // leaves the call's last transfer as the case says
		holds, cleanUp bool                                          // HoldsCall of it
	}{
		{"active", false, func(*orchestrator.Transfer, time.Time) {}, true, false},
		{"unverified, owing", false, unverified, true, true},
		{"no outcome, owing", false, func(tr *orchestrator.Transfer, at time.Time) { owing(tr, nil, at) }, true, true},
		{"verified, a tombstone", false, func(tr *orchestrator.Transfer, at time.Time) {
			owing(tr, &orchestrator.Outcome{Reason: orchestrator.ReasonTimeout, Verified: true}, at)
		}, false, false},
		{"ended, nothing owed", false, func(tr *orchestrator.Transfer, at time.Time) {
			f.end(tr, orchestrator.StateCancelled, false, at)
		}, false, false},
		{"by call id, active", true, func(*orchestrator.Transfer, time.Time) {}, true, false},
		{"by call id, unverified, owing", true, unverified, true, true},
		{"by call id, ended, nothing owed", true, func(tr *orchestrator.Transfer, at time.Time) {
			f.end(tr, orchestrator.StateCompleted, false, at)
		}, false, false},
	}
	for i, c := range cases {
		user := strconv.Itoa(3000 + i)
		mk := func() *orchestrator.Transfer {
			if c.byCallID {
				return f.bwTransfer("call-" + user)
			}
			return f.transfer(user)
		}
		first := f.create(mk())
		c.last(first, t0.Add(time.Duration(i+1)*time.Hour))
		if holds, cleanUp := f.get(first.ID).HoldsCall(); holds != c.holds || cleanUp != c.cleanUp {
			f.Fatalf("%s: HoldsCall = %v, %v; the case wants %v, %v", c.name, holds, cleanUp, c.holds, c.cleanUp)
		}
		for _, other := range []func(*orchestrator.Transfer){
			func(o *orchestrator.Transfer) { o.Request.Provider = "other" },
			func(o *orchestrator.Transfer) { o.Tenant = "another" },
		} {
			o := mk()
			other(o)
			if err := f.s.Create(f.ctx, o); err != nil {
				f.Errorf("%s: a transfer of the call under another provider or tenant: %v", c.name, err)
			}
		}
		next := mk()
		if !c.byCallID {
			next.Request.Call.User = strings.ToUpper(user) + "x" // another user of the domain
			if err := f.s.Create(f.ctx, next); err != nil {
				f.Errorf("%s: a transfer of another user's call: %v", c.name, err)
			}
			next = mk()
			next.Request.Call.Domain = strings.ToLower(next.Request.Call.Domain) // the same call in another case
		}
		err := f.s.Create(f.ctx, next)
		switch {
		case !c.holds && err != nil:
			f.Errorf("%s: Create: %v, want the call free", c.name, err)
		case c.holds && err == nil:
			f.Errorf("%s: Create saved a transfer of a call its last transfer %s holds", c.name, first.ID)
		case c.holds:
			wantActive(f.T, c.name, err, first.ID)
			var active *orchestrator.ActiveTransferError
			if errors.As(err, &active) && active.CleaningUp != c.cleanUp {
				f.Errorf("%s: ActiveTransferError.CleaningUp = %v, want %v", c.name, active.CleaningUp, c.cleanUp)
			}
		}
	}
}

// A create is refused while any transfer of the call holds it, whatever
// the order of their ids. Ids begin with their replica's clock: a replica
// whose clock runs ahead gives a transfer an id later than those of the
// transfers another replica creates after it. Here the first transfer of
// the call has the later id and ended owing nothing; the second, created
// after it with an earlier id, ended owing the call. When the stores
// looked at the call's newest transfer by id, they found the first and
// let a third by, whose consult the second's sweeper would have broken
// by taking the caller off hold.
func testCreateRefusesACallAnEarlierIDHolds(f *fixture) {
	for _, byCallID := range []bool{false, true} {
		mk := func() *orchestrator.Transfer {
			if byCallID {
				return f.bwTransfer("call-skew")
			}
			return f.transfer("skew")
		}
		ahead := mk()
		ahead.ID = orchestrator.NewID(t0.Add(24 * time.Hour)) // its replica's clock a day ahead
		f.create(ahead)
		f.end(ahead, orchestrator.StateCompleted, false, t0.Add(time.Hour))
		behind := f.create(mk())
		if behind.ID > ahead.ID {
			f.Fatalf("the fixture's ids: %s after %s", behind.ID, ahead.ID)
		}
		f.end(behind, orchestrator.StateFailed, true, t0.Add(2*time.Hour))
		err := f.s.Create(f.ctx, mk())
		if err == nil {
			f.Fatalf("by call id %v: Create saved a transfer of a call that %s, with an earlier id, holds", byCallID, behind.ID)
		}
		wantActive(f.T, "an earlier id holds the call", err, behind.ID)
		var active *orchestrator.ActiveTransferError
		if errors.As(err, &active) && !active.CleaningUp {
			f.Errorf("by call id %v: ActiveTransferError.CleaningUp = false, want true", byCallID)
		}
		// Once the second's cleanup is verified, the call is free.
		behind.Outcome.Verified = true
		f.setState(behind, orchestrator.StateFailed, t0.Add(3*time.Hour))
		f.create(mk())
	}
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
	// Of kind conflict, as Store.PutSignal's ErrStale is, in every store.
	wantKind(f.T, "Update with a stale version", err, orchestrator.KindConflict)
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
	got.Cleanup.Until = time.Time{}
	f.equal("after mutating a read record", f.get(t.ID), t)

	listed, _, err := f.s.List(f.ctx, orchestrator.ListFilter{Limit: 10})
	if err != nil || len(listed) != 1 {
		f.Fatalf("List: %v, %v", listed, err)
	}
	listed[0].Steps[1].Detail = "changed"
	f.equal("after mutating a listed record", f.get(t.ID), t)
}

// ---- Round trip ----

// Every field survives Create, Update, Get, List and Claim exactly.
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
	t.Cleanup = nil
	t.Sent.Dial = time.Time{}
	t.Sent.Join = t0.Add(7 * time.Second)
	t.Seen = orchestrator.Seen{Consult: true}
	t.IdempotencyScope, t.IdempotencyKey = "", ""
	t.Answered = false
	t.Failure = nil
	t.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonCancelled, CallerRestored: true, Verified: true, Detail: "cancelled by the client",
		Evidence: &orchestrator.Evidence{Status: 200}}
	t.Signal = orchestrator.SignalNone
	t.ConsultDeadline = time.Time{}
	t.Owner = ""
	t.UpdatedAt = t0.Add(9*time.Second + 5)
	f.update(t)
	got := f.get(t.ID)
	f.equal("Get after Update", got, t)
	if !got.ConsultDeadline.IsZero() || !got.Sent.Dial.IsZero() || !got.Steps[4].EndedAt.IsZero() {
		f.Errorf("zero times came back non-zero: %v %v %v", got.ConsultDeadline, got.Sent.Dial, got.Steps[4].EndedAt)
	}
	if got.Request.Recording.Enabled == nil || !*got.Request.Recording.Enabled {
		f.Errorf("Recording.Enabled came back %v, want true", got.Request.Recording.Enabled)
	}

	// Empty slices stay empty, nil ones nil.
	bare := f.transfer("1000")
	bare.Steps = []orchestrator.Step{}
	f.create(bare)
	f.equal("Get of a bare record", f.get(bare.ID), bare)

	listed, _, err := f.s.List(f.ctx, orchestrator.ListFilter{Limit: 10})
	if err != nil || len(listed) != 2 {
		f.Fatalf("List: %v, %v", ids(listed), err)
	}
	f.equal("List", listed[0], bare)
	f.equal("List", listed[1], t)

	now := t0.Add(time.Hour).Truncate(time.Microsecond)
	claimed := f.claim("replica-b", now, false, 10)
	if len(claimed) != 1 {
		f.Fatalf("Claim returned %v, want %s", ids(claimed), bare.ID)
	}
	bare.Owner, bare.Version = "replica-b", bare.Version+1
	f.equal("Claim", claimed[0], bare)
	f.equal("Get after Claim", f.get(bare.ID), bare)
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

// ---- Heartbeats and claims ----

// now is the clock of the ownership tests: whole microseconds, since the
// stores compare heartbeats inside the database.
var now = t0.Add(time.Hour).Truncate(time.Microsecond)

// Heartbeat reports expired for a new replica and for one whose heartbeat
// ran out (a heartbeat is live while now < its end), not for a live one.
func testHeartbeat(f *fixture) {
	const ttl = 10 * time.Second
	if !f.heartbeat("A", now, ttl) {
		f.Errorf("the first Heartbeat of a replica: expired false, want true")
	}
	if f.heartbeat("A", now.Add(5*time.Second), ttl) { // live until now+15s
		f.Errorf("a Heartbeat within the ttl: expired true, want false")
	}
	if f.heartbeat("A", now.Add(15*time.Second-time.Microsecond), ttl) { // live until now+25s-1µs
		f.Errorf("a Heartbeat a microsecond before the end: expired true, want false")
	}
	if !f.heartbeat("A", now.Add(25*time.Second-time.Microsecond), ttl) {
		f.Errorf("a Heartbeat at the end of the previous one: expired false, want true")
	}
	if !f.heartbeat("B", now.Add(20*time.Second), ttl) {
		f.Errorf("another replica's first Heartbeat: expired false, want true (replicas are independent)")
	}
	if f.heartbeat("A", now.Add(30*time.Second), ttl) {
		f.Errorf("A's Heartbeat after B's: expired true, want false")
	}
	if !f.heartbeat("B", now.Add(time.Hour), ttl) {
		f.Errorf("a Heartbeat long after the last: expired false, want true")
	}
}

// A save that carries its process's token (Transfer.Token) is made only
// while its owner's heartbeat holds that token: once a second process took
// the name over, the first one's updates and creates write nothing, events
// included, and fail with ErrSupersededSave (KindConflict), which matches
// ErrSuperseded and ErrVersionConflict; the second's are made. No token, no
// owner (a hand-over), a name with no heartbeat, or one whose heartbeat
// has no token (an older version's) is no check. Before, the
// first process went on saving the name's transfers until its next
// heartbeat, up to a quarter of the lease, and each save could precede a
// provider request: a transfer it created, or one the second adopted
// without a claim, was driven by both.
func testSavesCarryTheToken(f *fixture) {
	const ttl = 10 * time.Second
	refused := func(what string, err error) {
		f.Helper()
		if !errors.Is(err, orchestrator.ErrSuperseded) || !errors.Is(err, orchestrator.ErrVersionConflict) ||
			orchestrator.KindOf(err) != orchestrator.KindConflict {
			f.Errorf("%s = %v (kind %v), want ErrSupersededSave of kind conflict", what, err, orchestrator.KindOf(err))
		}
	}
	f.beat("X", "first", now, ttl, false)
	a := f.transfer("1000")
	a.Owner, a.Token = "X", "first"
	f.create(a)
	a.State = orchestrator.StateHolding
	f.update(a)
	// Several, so that a store that writes concurrent saves together
	// (the group commits) meets both verdicts in one batch.
	var many []*orchestrator.Transfer
	for i := range 8 {
		t := f.transfer("2" + strconv.Itoa(i))
		t.Owner, t.Token = "X", "first"
		many = append(many, f.create(t))
	}

	f.beat("X", "second", now.Add(time.Second), ttl, true) // a second process takes the name over

	a.State = orchestrator.StateDialing
	Emit(a, orchestrator.EventStateChanged, orchestrator.StateHolding, orchestrator.StateDialing)
	refused("the first process's update after the takeover", f.s.Update(f.ctx, a))
	if a.Version != 2 {
		f.Errorf("a refused update changed the version to %d", a.Version)
	}
	if got := f.get(a.ID); got.Version != 2 || got.State != orchestrator.StateHolding {
		f.Errorf("after a refused update the record is at version %d, %s; want 2, holding", got.Version, got.State)
	}
	if evs := f.events(orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: a.ID}); len(evs) != 0 {
		f.Errorf("a refused update wrote events %v", eventIDs(evs))
	}
	clearOutbox(a)

	c := f.transfer("1001")
	c.Owner, c.Token = "X", "first"
	refused("the first process's create after the takeover", f.s.Create(f.ctx, c))
	if _, err := f.s.Get(f.ctx, c.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		f.Errorf("Get of a refused create = %v, want not found", err)
	}
	c2 := f.transfer("1001") // the call was left free
	c2.Owner, c2.Token = "X", "second"
	f.create(c2)

	var wg sync.WaitGroup
	errs := make([]error, len(many))
	for i, t := range many {
		if i%2 == 1 {
			t.Token = "second"
		}
		t.State = orchestrator.StateHolding
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.s.Update(f.ctx, t)
		}()
	}
	wg.Wait()
	for i, t := range many {
		if i%2 == 1 {
			if errs[i] != nil || f.get(t.ID).Version != 2 {
				f.Errorf("the second process's update of %s beside refused ones = %v, stored version %d; want saved, 2", t.ID, errs[i], f.get(t.ID).Version)
			}
			continue
		}
		refused("the first process's update "+t.ID+" beside the second's", errs[i])
		if got := f.get(t.ID); got.Version != 1 || got.State != orchestrator.StatePending {
			f.Errorf("after a refused update %s is at version %d, %s; want 1, pending", t.ID, got.Version, got.State)
		}
	}

	a.Token = "second"
	f.update(a)
	a.Token, a.State = "", orchestrator.StateConsulting
	f.update(a) // no token: no check (an older version's save)
	a.Owner, a.Token = "", "first"
	f.update(a) // a hand-over: no owner whose heartbeat to check
	w := f.transfer("1002")
	w.Owner, w.Token = "W", "any" // a name with no heartbeat
	f.create(w)
	f.update(w)
	f.beat("V", "", now, ttl, false) // an older version's heartbeat, without a token
	v := f.transfer("1003")
	v.Owner, v.Token = "V", "any"
	f.create(v)
	f.update(v)
}

// A heartbeat carries its process's token: a process whose heartbeat is
// live finds another's token in its row when a second process took the
// name over (take, as a process starting does), and then writes nothing
// and fails with ErrSuperseded. Its own token (a retry of a heartbeat
// whose answer was lost), no token (a row an older version wrote) and an
// expired row are no alarm.
func testSuperseded(f *fixture) {
	const ttl = 10 * time.Second
	superseded := func(what, tok string, at time.Time) {
		f.Helper()
		_, err := f.s.Heartbeat(f.ctx, "X", tok, at, ttl, false)
		if !errors.Is(err, orchestrator.ErrSuperseded) {
			f.Errorf("%s: Heartbeat = %v, want ErrSuperseded", what, err)
		}
	}
	f.beat("X", "first", now, ttl, false)
	if f.beat("X", "first", now, ttl, false) {
		f.Errorf("the same heartbeat again (its answer lost): expired true, want false")
	}
	if f.beat("X", "second", now.Add(time.Second), ttl, true) {
		f.Errorf("a second process taking a live heartbeat over: expired true, want false")
	}
	superseded("the first process's next heartbeat", "first", now.Add(2*time.Second))
	// The refused heartbeat wrote nothing: the row is still the second's,
	// live until now+11s.
	superseded("the first process's heartbeat after a refused one", "first", now.Add(3*time.Second))
	if f.beat("X", "second", now.Add(4*time.Second), ttl, false) {
		f.Errorf("the second process's heartbeat: expired true, want false")
	}
	if got := f.claim("peer", now.Add(14*time.Second-time.Microsecond), false, 0); len(got) != 0 {
		f.Errorf("Claim while the second process's heartbeat is live = %v, want none", ids(got))
	}
	// Expired, the row is anybody's: a process under the name whose
	// heartbeat lapsed takes it back.
	if !f.beat("X", "first", now.Add(14*time.Second), ttl, false) {
		f.Errorf("a heartbeat after the row expired: expired false, want true")
	}
	superseded("the second process's heartbeat after the first took the expired row", "second", now.Add(15*time.Second))

	// A row without a token, as an older version writes it, is taken by
	// whichever process beats next, and then is its.
	f.beat("Y", "", now, ttl, false)
	if f.beat("Y", "new", now.Add(time.Second), ttl, false) {
		f.Errorf("a heartbeat over a live row without a token: expired true, want false")
	}
	if _, err := f.s.Heartbeat(f.ctx, "Y", "other", now.Add(2*time.Second), ttl, false); !errors.Is(err, orchestrator.ErrSuperseded) {
		f.Errorf("a heartbeat over a row another token took from an older version's: %v, want ErrSuperseded", err)
	}

	// A superseded process's release leaves the other's heartbeat alone.
	f.beat("Z", "old", now, ttl, false)
	f.beat("Z", "new", now, ttl, true) // the same end: only the token tells them apart
	left := f.owned("1", "Z")
	if err := f.s.Release(f.ctx, "Z", "old", now.Add(ttl), now.Add(time.Second)); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if got := f.claim("peer", now.Add(2*time.Second), false, 0); len(got) != 0 {
		f.Errorf("Claim after a superseded process's Release = %v, want none: the newer process's heartbeat is live", ids(got))
	}
	if err := f.s.Release(f.ctx, "Z", "new", now.Add(ttl), now.Add(time.Second)); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if got := f.claim("peer", now.Add(2*time.Second), false, 0); !slices.Equal(ids(got), idsOf(left)) {
		f.Errorf("Claim after the newer process's Release = %v, want %v", ids(got), idsOf(left))
	}
}

// Release ends a replica's heartbeat, so that its open transfers are
// claimable at once, but only the heartbeat it wrote last: one a newer
// process under the same name wrote since stays, and so do others'.
func testRelease(f *fixture) {
	const ttl = 30 * time.Second
	f.heartbeat("gone", now, ttl)
	f.heartbeat("other", now, ttl)
	left := f.owned("1", "gone")
	ofOther := f.owned("2", "other")
	if got := f.claim("peer", now.Add(time.Second), false, 0); len(got) != 0 {
		f.Fatalf("Claim while both heartbeats are live = %v, want none", ids(got))
	}
	at := now.Add(2 * time.Second)
	if err := f.s.Release(f.ctx, "gone", token("gone"), now.Add(ttl), at); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if got := f.claim("peer", at, false, 0); !slices.Equal(ids(got), idsOf(left)) {
		f.Errorf("Claim at the release = %v, want %v (the released replica's only)", ids(got), idsOf(left))
	}
	f.equal("a live replica's transfer", f.get(ofOther.ID), ofOther)
	if !f.heartbeat("gone", at, ttl) {
		f.Errorf("a Heartbeat after the release: expired false, want true")
	}

	// A process restarted under the same name beat since: the old
	// process's release leaves that heartbeat alone.
	f.beat("again", "old", now, ttl, false)
	f.beat("again", "new", now.Add(time.Second), ttl, true) // the newer process
	mine := f.owned("3", "again")
	if err := f.s.Release(f.ctx, "again", "old", now.Add(ttl), at); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if got := f.claim("peer", at, false, 0); len(got) != 0 {
		f.Errorf("Claim after a stale Release = %v, want none: the newer process's heartbeat is live", ids(got))
	}
	f.equal("a transfer of the newer process", f.get(mine.ID), mine)
	// The engine's times carry nanoseconds, which a store may not keep:
	// the release still finds the heartbeat written with the same time.
	beat := now.Add(789 * time.Nanosecond)
	f.heartbeat("fine", beat, ttl)
	fine := f.owned("4", "fine")
	if err := f.s.Release(f.ctx, "fine", token("fine"), beat.Add(ttl), at); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if got := f.claim("peer", at, false, 0); !slices.Equal(ids(got), idsOf(fine)) {
		f.Errorf("Claim after releasing a heartbeat written with nanoseconds = %v, want %v", ids(got), idsOf(fine))
	}
	// Released before a heartbeat was ever written: nothing to end.
	if err := f.s.Release(f.ctx, "never-beat", token("never-beat"), now, at); err != nil {
		f.Errorf("Release of a replica without a heartbeat: %v", err)
	}
}

// Peers counts the replicas other than the one asking whose heartbeat is
// live: not its own, not one expired or released.
func testPeers(f *fixture) {
	const ttl = 30 * time.Second
	count := func(owner string, at time.Time) int {
		f.Helper()
		n, err := f.s.Peers(f.ctx, owner, at)
		if err != nil {
			f.Fatalf("Peers(%s): %v", owner, err)
		}
		return n
	}
	if n := count("a", now); n != 0 {
		f.Errorf("Peers with no heartbeat at all = %d, want 0", n)
	}
	f.heartbeat("a", now, ttl)
	if n := count("a", now); n != 0 {
		f.Errorf("Peers of the only replica = %d, want 0", n)
	}
	f.heartbeat("b", now, ttl)
	f.heartbeat("c", now, time.Second)
	if n := count("a", now); n != 2 {
		f.Errorf("Peers with two others live = %d, want 2", n)
	}
	if n := count("a", now.Add(2*time.Second)); n != 1 {
		f.Errorf("Peers once one's heartbeat ran out = %d, want 1", n)
	}
	at := now.Add(3 * time.Second)
	if err := f.s.Release(f.ctx, "b", token("b"), now.Add(ttl), at); err != nil {
		f.Fatalf("Release: %v", err)
	}
	if n := count("a", at); n != 0 {
		f.Errorf("Peers once the other released its heartbeat = %d, want 0", n)
	}
	if n := count("b", at); n != 1 {
		f.Errorf("Peers of a replica that released its heartbeat = %d, want 1 (a)", n)
	}
}

// A transfer its owner saves with no owner (handed over at shutdown) is
// claimed by the next Claim of any replica, its former owner's heartbeat
// still live, and is no longer among that owner's.
func testHandedOver(f *fixture) {
	const ttl = 30 * time.Second
	f.heartbeat("a", now, ttl)
	f.heartbeat("b", now, ttl)
	t := f.owned("1", "a")
	kept := f.owned("2", "a")
	t.Owner = ""
	f.update(t)
	if got, err := f.s.Owned(f.ctx, "a"); err != nil || !slices.Equal(got, []string{kept.ID}) {
		f.Errorf("Owned(a) after handing one over = %v, %v; want %v", got, err, []string{kept.ID})
	}
	got := f.claim("b", now.Add(time.Second), false, 0)
	if !slices.Equal(ids(got), []string{t.ID}) {
		f.Fatalf("Claim(b) = %v, want the handed-over %s alone", ids(got), t.ID)
	}
	if got[0].Owner != "b" || got[0].Version != t.Version+1 {
		f.Errorf("claimed: owner %q version %d, want b at %d", got[0].Owner, got[0].Version, t.Version+1)
	}
	if got := f.claim("c", now.Add(time.Second), false, 0); len(got) != 0 {
		f.Errorf("a second Claim = %v, want none", ids(got))
	}
}

// Claim says which records it took with no owner (Unowned: a hand-over's,
// whose save recorded all its replica sent) and which it took from a
// replica (a crash): the engine waits, before its join, for a hang-up
// the replica before may have sent unrecorded from the latter only. The
// owner at the claim decides, not what a record said when saved: one
// claimed with no owner and saved by its claimer (Unowned still set in
// the engine's copy) is that claimer's when the next claim takes it.
func testClaimSaysUnowned(f *fixture) {
	const ttl = 30 * time.Second
	f.heartbeat("dead", now.Add(-time.Minute), ttl) // ended at now-30s
	f.heartbeat("self", now, ttl)
	handed := f.owned("1", "")
	crashed := f.owned("2", "dead")
	mine := f.owned("3", "self")

	got := f.claim("b", now, false, 0)
	if !slices.Equal(ids(got), idsOf(handed, crashed)) {
		f.Fatalf("Claim(b) = %v, want %v", ids(got), idsOf(handed, crashed))
	}
	if !got[0].Unowned || got[1].Unowned {
		f.Errorf("Claim(b): Unowned %v (no owner) and %v (a dead replica's), want true and false", got[0].Unowned, got[1].Unowned)
	}
	if f.get(handed.ID).Unowned {
		f.Errorf("Get after the claim says Unowned: it is not stored")
	}
	// b saves the one it took with no owner, its copy still marked, and
	// dies: the next claim takes it from b.
	f.update(got[0])
	f.heartbeat("c", now, ttl)
	again := f.claim("c", now.Add(ttl-time.Microsecond), false, 0) // b never beat; self's heartbeat holds
	if !slices.Equal(ids(again), idsOf(handed, crashed)) {
		f.Fatalf("Claim(c) = %v, want %v", ids(again), idsOf(handed, crashed))
	}
	for _, t := range again {
		if t.Unowned {
			f.Errorf("Claim(c) of %s: Unowned, want false: b owned it", t.ID)
		}
	}
	// A process restarted under its own name takes its own from itself.
	own := f.claim("self", now, true, 0)
	if !slices.Equal(ids(own), idsOf(mine)) || own[0].Unowned {
		f.Errorf("Claim(self, own) = %v (Unowned %v), want %v, not unowned", ids(own), len(own) > 0 && own[0].Unowned, idsOf(mine))
	}
}

// Claim takes the open transfers whose owner has no live heartbeat (or no
// owner) oldest first, up to limit, with own also the claimer's own; it
// sets Owner and bumps Version so that the previous owner's next Update
// fails. Live owners' transfers and closed transfers are never claimed.
func testClaim(f *fixture) {
	const ttl = 30 * time.Second
	f.heartbeat("live", now, ttl)
	f.heartbeat("dead", now.Add(-time.Minute), ttl) // ended at now-30s
	f.heartbeat("self", now, ttl)

	unowned := f.owned("1", "")
	ofLive := f.owned("2", "live")
	ofDead := f.owned("3", "dead")
	ofUnknown := f.owned("4", "never-beat") // an owner without any heartbeat
	deadCleanup := f.owned("5", "dead")
	f.end(deadCleanup, orchestrator.StateFailed, true, now)
	deadClosed := f.owned("6", "dead")
	f.end(deadClosed, orchestrator.StateCompleted, false, now)
	liveCleanup := f.owned("7", "live")
	f.end(liveCleanup, orchestrator.StateCancelled, true, now)
	mine := f.owned("8", "self")
	unownedClosed := f.owned("9", "")
	f.end(unownedClosed, orchestrator.StateCompleted, false, now)
	oldOfDead := f.get(ofDead.ID)

	first := f.claim("self", now, false, 2)
	if want := idsOf(unowned, ofDead); !slices.Equal(ids(first), want) {
		f.Fatalf("Claim(limit 2) = %v, want %v (oldest first)", ids(first), want)
	}
	rest := f.claim("self", now, false, 0)
	if want := idsOf(ofUnknown, deadCleanup); !slices.Equal(ids(rest), want) {
		f.Fatalf("Claim(limit 0: no bound) = %v, want %v", ids(rest), want)
	}
	before := map[string]*orchestrator.Transfer{unowned.ID: unowned, ofDead.ID: ofDead, ofUnknown.ID: ofUnknown, deadCleanup.ID: deadCleanup}
	for _, t := range append(first, rest...) {
		if t.Owner != "self" || t.Version != before[t.ID].Version+1 {
			f.Errorf("claimed %s: owner %q version %d, want self and %d", t.ID, t.Owner, t.Version, before[t.ID].Version+1)
		}
		f.equal("Get of a claimed transfer", f.get(t.ID), t)
	}
	for _, t := range []*orchestrator.Transfer{ofLive, deadClosed, liveCleanup, mine, unownedClosed} {
		f.equal("a transfer Claim must not take", f.get(t.ID), t)
	}

	// The previous owner lost the record: its next save fails; the new
	// owner's succeeds.
	oldOfDead.State = orchestrator.StateHolding
	if err := f.s.Update(f.ctx, oldOfDead); !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Errorf("the previous owner's Update after a claim: %v, want ErrVersionConflict", err)
	}
	taken := first[1]
	taken.State = orchestrator.StateHolding
	f.update(taken)

	// A process restarted under its own name takes back all it owns,
	// also what it claimed a moment ago.
	again := f.claim("self", now, true, 10)
	if want := idsOf(unowned, ofDead, ofUnknown, deadCleanup, mine); !slices.Equal(ids(again), want) {
		f.Fatalf("Claim(own) = %v, want %v", ids(again), want)
	}
	if got := f.get(mine.ID); got.Owner != "self" || got.Version != mine.Version+1 {
		f.Errorf("own claim of %s: owner %q version %d, want self and %d", mine.ID, got.Owner, got.Version, mine.Version+1)
	}

	// Heartbeats keep what they cover: "live" beats again, "self" does
	// not; at the end of self's heartbeat (not a microsecond before) its
	// transfers go to whoever claims.
	if f.heartbeat("live", now.Add(20*time.Second), ttl) {
		f.Errorf("live's second Heartbeat: expired true")
	}
	if got := f.claim("other", now.Add(ttl-time.Microsecond), false, 10); len(got) != 0 {
		f.Errorf("Claim while every owner is live took %v", ids(got))
	}
	later := f.claim("other", now.Add(ttl), false, 10)
	if want := idsOf(unowned, ofDead, ofUnknown, deadCleanup, mine); !slices.Equal(ids(later), want) {
		f.Errorf("Claim after self's heartbeat ended = %v, want %v", ids(later), want)
	}
	f.equal("a transfer whose owner renewed its heartbeat", f.get(ofLive.ID), ofLive)
	f.equal("a terminal transfer owing a cleanup, owner live", f.get(liveCleanup.ID), liveCleanup)
	if got := f.claim("third", now.Add(time.Hour), false, 10); !slices.Equal(ids(got), idsOf(unowned, ofLive, ofDead, ofUnknown, deadCleanup, liveCleanup, mine)) {
		f.Errorf("Claim once every heartbeat ended = %v, want every open transfer", ids(got))
	}
	// A replica whose own heartbeat lapsed (a slow process: "third" never
	// beat) does not take its own transfers through the claim of dead
	// replicas' (own false): it drives them already, and bumping their
	// versions would make it lose them to itself, over and over.
	if got := f.claim("third", now.Add(time.Hour), false, 10); len(got) != 0 {
		f.Errorf("Claim(not own) by a replica whose heartbeat lapsed took its own %v", ids(got))
	}
}

// Claim follows Transfer.Open as saved by Create and Update: a terminal
// transfer is claimable while it owes a cleanup, and stops being so once
// a save discharges the obligation.
func testClaimFollowsOpen(f *fixture) {
	owing := f.owned("1", "gone")
	f.end(owing, orchestrator.StateFailed, true, now)
	createdOwing := f.transfer("2")
	createdOwing.State, createdOwing.Owner = orchestrator.StateCompleted, "gone"
	createdOwing.Cleanup = &orchestrator.Cleanup{Until: now, Reason: "tombstone"}
	f.create(createdOwing)
	createdClosed := f.transfer("3")
	createdClosed.State, createdClosed.Owner = orchestrator.StateCancelled, "gone"
	f.create(createdClosed)

	got := f.claim("x", now, false, 10)
	if want := idsOf(owing, createdOwing); !slices.Equal(ids(got), want) {
		f.Fatalf("Claim = %v, want %v", ids(got), want)
	}
	// x discharges one obligation and never heartbeats: y takes the rest.
	done := got[0]
	done.Cleanup, done.Outcome.Verified = nil, true
	f.update(done)
	// A closed transfer that is found to owe a cleanup after all.
	createdClosed.Cleanup = &orchestrator.Cleanup{Until: now, Reason: "late leg"}
	f.update(createdClosed)
	if got := f.claim("y", now, false, 10); !slices.Equal(ids(got), idsOf(createdOwing, createdClosed)) {
		f.Errorf("Claim after the saves = %v, want %v", ids(got), idsOf(createdOwing, createdClosed))
	}
}

// Concurrent Claims never take the same transfer.
func testClaimConcurrent(f *fixture) {
	const transfers, owners = 24, 6
	for i := range transfers {
		f.create(f.transfer(strconv.Itoa(i)))
	}
	for o := range owners { // live claimers: none takes from another
		f.heartbeat("owner-"+strconv.Itoa(o), now, time.Hour)
	}
	claims := make([][]string, owners)
	errs := make([]error, owners)
	var wg sync.WaitGroup
	for o := range owners {
		wg.Go(func() {
			for {
				ts, err := f.s.Claim(f.ctx, "owner-"+strconv.Itoa(o), "", now, false, 3)
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
			f.Errorf("owner-%d: Claim: %v", o, errs[o])
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

// ---- Signals ----

// A signal put with a version is recorded only while the stored transfer
// is at that version: a save after the signal's check makes it stale
// (ErrStale, a conflict), and a pending signal or a missing transfer is
// told as with no version.
func testSignalAtVersion(f *fixture) {
	t := f.create(f.transfer("1000"))
	v := t.Version
	f.update(t) // a save since the version the signal was checked against
	err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, v)
	wantKind(f.T, "PutSignal at a version saved over", err, orchestrator.KindConflict)
	if !errors.Is(err, orchestrator.ErrStale) {
		f.Errorf("PutSignal at a version saved over = %v, want ErrStale", err)
	}
	if sig, err := f.s.PeekSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("after a stale PutSignal, PeekSignal = %q, %v; want none", sig, err)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, t.Version); err != nil {
		f.Fatalf("PutSignal at the stored version: %v", err)
	}
	err = f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalComplete, t.Version)
	wantKind(f.T, "PutSignal at the version while one is pending", err, orchestrator.KindConflict)
	if errors.Is(err, orchestrator.ErrStale) {
		f.Errorf("PutSignal while one is pending = %v, want a pending signal, not ErrStale", err)
	}
	wantKind(f.T, "PutSignal at a version for an unknown transfer", f.s.PutSignal(f.ctx, f.id(), orchestrator.SignalCancel, 1), orchestrator.KindNotFound)
}

// testUpdateLooksForSignal: an Update asked to look for the pending
// signal (Transfer.LookForSignal) finds the one put at the version it
// saves over, and says it looked; one not asked, or that fails, says
// nothing; nothing of the look is stored.
func testUpdateLooksForSignal(f *fixture) {
	t := f.create(f.transfer("1000"))
	t.LookForSignal = true
	f.update(t)
	if !t.SignalLooked || t.PendingSignal != orchestrator.SignalNone {
		f.Errorf("Update looking, none pending: looked %v, found %q; want looked, none", t.SignalLooked, t.PendingSignal)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, t.Version); err != nil {
		f.Fatalf("PutSignal: %v", err)
	}
	t.LookForSignal, t.SignalLooked, t.PendingSignal = false, false, orchestrator.SignalNone
	f.update(t)
	if t.SignalLooked || t.PendingSignal != orchestrator.SignalNone {
		f.Errorf("Update not looking: looked %v, found %q; want neither", t.SignalLooked, t.PendingSignal)
	}
	t.LookForSignal = true
	f.update(t)
	if !t.SignalLooked || t.PendingSignal != orchestrator.SignalCancel {
		f.Errorf("Update looking, a cancel pending: looked %v, found %q; want looked, cancel", t.SignalLooked, t.PendingSignal)
	}
	if sig, err := f.s.PeekSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalCancel {
		f.Errorf("after the look, PeekSignal = %q, %v; want the cancel still pending", sig, err)
	}
	got := f.get(t.ID)
	if got.LookForSignal || got.SignalLooked || got.PendingSignal != orchestrator.SignalNone {
		f.Errorf("Get after a look: LookForSignal %v, SignalLooked %v, PendingSignal %q; want none stored",
			got.LookForSignal, got.SignalLooked, got.PendingSignal)
	}
	stale := t.Clone()
	stale.Version--
	stale.SignalLooked, stale.PendingSignal = false, orchestrator.SignalNone
	if err := f.s.Update(f.ctx, stale); !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Errorf("Update looking at a stale version: %v, want ErrVersionConflict", err)
	}
	if stale.SignalLooked || stale.PendingSignal != orchestrator.SignalNone {
		f.Errorf("a failed Update looking: looked %v, found %q; want neither", stale.SignalLooked, stale.PendingSignal)
	}
}

// testUpdateLooksForSignalInABatch: concurrent Updates, which the SQL
// stores write together, each find their own transfer's signal and no
// other's, whether or not the others look.
func testUpdateLooksForSignalInABatch(f *fixture) {
	const n = 16
	ts := make([]*orchestrator.Transfer, n)
	for i := range ts {
		ts[i] = f.create(f.transfer(strconv.Itoa(2000 + i)))
		if i%3 == 0 {
			sig := orchestrator.SignalCancel
			if i%2 == 0 {
				sig = orchestrator.SignalComplete
			}
			if err := f.s.PutSignal(f.ctx, ts[i].ID, sig, ts[i].Version); err != nil {
				f.Fatalf("PutSignal: %v", err)
			}
		}
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, t := range ts {
			t.LookForSignal = (i+round)%2 == 0
			t.SignalLooked, t.PendingSignal = false, orchestrator.SignalNone
			wg.Go(func() { errs[i] = f.s.Update(f.ctx, t) })
		}
		wg.Wait()
		for i, t := range ts {
			if errs[i] != nil {
				f.Fatalf("round %d: Update(%s): %v", round, t.ID, errs[i])
			}
			want := orchestrator.SignalNone
			switch {
			case i%3 == 0 && i%2 == 0:
				want = orchestrator.SignalComplete
			case i%3 == 0:
				want = orchestrator.SignalCancel
			}
			if !t.LookForSignal {
				want = orchestrator.SignalNone
			}
			if t.SignalLooked != t.LookForSignal || t.PendingSignal != want {
				f.Errorf("round %d, transfer %d (looking %v): looked %v, found %q; want %q",
					round, i, t.LookForSignal, t.SignalLooked, t.PendingSignal, want)
			}
		}
	}
}

func testSignals(f *fixture) {
	t := f.create(f.transfer("1000"))
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("TakeSignal with none pending = %q, %v; want none", sig, err)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalComplete, 0); err != nil {
		f.Fatalf("PutSignal: %v", err)
	}
	wantKind(f.T, "PutSignal while one is pending", f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, 0), orchestrator.KindConflict)
	wantKind(f.T, "PutSignal of the same signal while pending", f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalComplete, 0), orchestrator.KindConflict)
	wantKind(f.T, "PutSignal for an unknown transfer", f.s.PutSignal(f.ctx, f.id(), orchestrator.SignalCancel, 0), orchestrator.KindNotFound)

	other := f.create(f.transfer("2000"))
	if err := f.s.PutSignal(f.ctx, other.ID, orchestrator.SignalCancel, 0); err != nil {
		f.Fatalf("PutSignal on another transfer: %v", err)
	}
	for range 2 {
		if sig, err := f.s.PeekSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalComplete {
			f.Errorf("PeekSignal = %q, %v; want complete, left pending", sig, err)
		}
	}
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalComplete {
		f.Errorf("TakeSignal = %q, %v; want complete", sig, err)
	}
	if sig, err := f.s.PeekSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("PeekSignal after the take = %q, %v; want none", sig, err)
	}
	if sig, err := f.s.PeekSignal(f.ctx, f.id()); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("PeekSignal of an unknown transfer = %q, %v; want none", sig, err)
	}
	if sig, err := f.s.TakeSignal(f.ctx, t.ID); err != nil || sig != orchestrator.SignalNone {
		f.Errorf("second TakeSignal = %q, %v; want none (take clears)", sig, err)
	}
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, 0); err != nil {
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
	if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, 0); err != nil {
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
		got.CreatedAt.Equal(want.CreatedAt) && got.Owner == want.Owner && (got.Response == nil) == (want.Response == nil)
	if same && got.Response != nil {
		g, w := got.Response, want.Response
		same = g.Status == w.Status && g.Location == w.Location && string(g.Body) == string(w.Body) &&
			g.TransferID == w.TransferID
	}
	if !same {
		f.Errorf("%s: got %s, want %s", what, fmtIdem(got), fmtIdem(want))
	}
}

func fmtIdem(r orchestrator.IdempotencyRecord) string {
	s := fmt.Sprintf("{%q %q hash %q created %v owner %q", r.Scope, r.Key, r.RequestHash, r.CreatedAt, r.Owner)
	if r.Response != nil {
		s += fmt.Sprintf(" response %d %q %q transfer %q", r.Response.Status, r.Response.Location, r.Response.Body, r.Response.TransferID)
	}
	return s + "}"
}

func testIdempotency(f *fixture) {
	at := t0.Truncate(time.Microsecond)
	rec := orchestrator.IdempotencyRecord{Scope: "POST /v1/transfers", Key: "key-1", RequestHash: "sha256:aa", CreatedAt: at, Owner: "replica-a"}
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

	resp := orchestrator.IdempotentResponse{Status: 202, Location: "/v1/transfers/tr_01", Body: []byte("{\"id\":\"tr_01\"}\x00\xff\xfe binary"),
		TransferID: "tr_01"}
	if err := f.s.CompleteIdempotency(f.ctx, rec.Scope, rec.Key, at, resp); err != nil {
		f.Fatalf("CompleteIdempotency: %v", err)
	}
	resp.Body[0] = 'X' // the caller reuses its buffer: the store kept its own copy
	got, ok = reserve(f, again)
	if ok {
		f.Errorf("Reserve of a completed key returned true")
	}
	want := rec
	want.Response = &orchestrator.IdempotentResponse{Status: 202, Location: resp.Location, Body: []byte("{\"id\":\"tr_01\"}\x00\xff\xfe binary"),
		TransferID: "tr_01"}
	equalIdem(f, "Reserve of a completed key", got, want)

	empty := orchestrator.IdempotentResponse{Status: 204}
	if err := f.s.CompleteIdempotency(f.ctx, other.Scope, other.Key, at, empty); err != nil {
		f.Fatalf("CompleteIdempotency with an empty body: %v", err)
	}
	got, _ = reserve(f, other)
	if got.Response == nil || got.Response.Status != 204 || got.Response.Location != "" || len(got.Response.Body) != 0 {
		f.Errorf("an empty response came back as %s", fmtIdem(got))
	}

	wantKind(f.T, "CompleteIdempotency of an unknown key",
		f.s.CompleteIdempotency(f.ctx, rec.Scope, "nope", at, resp), orchestrator.KindNotFound)

	// Another reservation of the key (a retry's, once this one was
	// settled) is not this request's to complete or delete.
	wantKind(f.T, "CompleteIdempotency of another reservation of the key",
		f.s.CompleteIdempotency(f.ctx, rec.Scope, rec.Key, at.Add(time.Microsecond), empty), orchestrator.KindNotFound)
	if err := f.s.DeleteIdempotency(f.ctx, rec.Scope, rec.Key, at.Add(-time.Microsecond)); err != nil {
		f.Fatalf("DeleteIdempotency of another reservation of the key: %v", err)
	}
	got, _ = reserve(f, again)
	equalIdem(f, "Reserve after another reservation's Complete and Delete", got, want)

	if err := f.s.DeleteIdempotency(f.ctx, rec.Scope, rec.Key, at); err != nil {
		f.Fatalf("DeleteIdempotency: %v", err)
	}
	if got, ok = reserve(f, again); !ok {
		f.Errorf("Reserve after Delete returned false")
	}
	equalIdem(f, "Reserve after Delete", got, again)
	if err := f.s.DeleteIdempotency(f.ctx, rec.Scope, "never-reserved", at); err != nil {
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

// Signalled lists the open transfers of one owner that have a pending
// signal; a closed transfer has nothing left to act on and is not listed.
func testSignalled(f *fixture) {
	x, y, z := f.owned("1", "A"), f.owned("2", "A"), f.owned("3", "A")
	f.end(z, orchestrator.StateFailed, true, now)
	w := f.owned("4", "A")
	f.end(w, orchestrator.StateCompleted, false, now)
	v := f.owned("5", "B")
	for _, t := range []*orchestrator.Transfer{x, z, w, v} {
		if err := f.s.PutSignal(f.ctx, t.ID, orchestrator.SignalCancel, 0); err != nil {
			f.Fatal(err)
		}
	}
	if got := f.signalled("A"); !slices.Equal(got, idsOf(x, z)) {
		f.Errorf("Signalled(A) = %v, want %v (not %s without a signal, not the closed %s)", got, idsOf(x, z), y.ID, w.ID)
	}
	if got := f.signalled("B"); !slices.Equal(got, idsOf(v)) {
		f.Errorf("Signalled(B) = %v, want %v", got, idsOf(v))
	}
	if got := f.signalled("nobody"); len(got) != 0 {
		f.Errorf("Signalled(nobody) = %v, want none", got)
	}
	if _, err := f.s.TakeSignal(f.ctx, x.ID); err != nil {
		f.Fatal(err)
	}
	if got := f.signalled("A"); !slices.Equal(got, idsOf(z)) {
		f.Errorf("Signalled(A) after a take = %v, want %v", got, idsOf(z))
	}
	// B claims A's open transfers (A never beat): the signal follows the
	// owner.
	f.claim("B", now, false, 10)
	if got := f.signalled("A"); len(got) != 0 {
		f.Errorf("Signalled(A) after B's claim = %v, want none", got)
	}
	if got := f.signalled("B"); !slices.Equal(got, idsOf(z, v)) {
		f.Errorf("Signalled(B) after its claim = %v, want %v", got, idsOf(z, v))
	}
}

// Owned lists the open transfers of one owner, oldest first: those with a
// cleanup obligation too, not the closed ones nor another owner's.
func testOwned(f *fixture) {
	x, y, z := f.owned("1", "A"), f.owned("2", "A"), f.owned("3", "A")
	f.end(y, orchestrator.StateFailed, true, now)
	f.end(z, orchestrator.StateCompleted, false, now)
	v := f.owned("4", "B")
	owned := func(owner string) []string {
		f.Helper()
		got, err := f.s.Owned(f.ctx, owner)
		if err != nil {
			f.Fatalf("Owned(%s): %v", owner, err)
		}
		return got
	}
	if got := owned("A"); !slices.Equal(got, idsOf(x, y)) {
		f.Errorf("Owned(A) = %v, want %v (not the closed %s)", got, idsOf(x, y), z.ID)
	}
	if got := owned("nobody"); len(got) != 0 {
		f.Errorf("Owned(nobody) = %v, want none", got)
	}
	// B claims A's open transfers (A never beat): they are B's now.
	f.claim("B", now, false, 10)
	if got := owned("A"); len(got) != 0 {
		f.Errorf("Owned(A) after B's claim = %v, want none", got)
	}
	if got := owned("B"); !slices.Equal(got, idsOf(x, y, v)) {
		f.Errorf("Owned(B) after its claim = %v, want %v", got, idsOf(x, y, v))
	}
}

// replayOf is the response SettleIdempotency gives a reservation linked
// to transfer id.
func replayOf(id string) *orchestrator.IdempotentResponse {
	return &orchestrator.IdempotentResponse{Status: 202, Location: "/v1/transfers/" + id, TransferID: id}
}

// Create links the reservation named by the transfer in the same write: a
// saved transfer's reservation is linked, a refused one's is not.
func testCreateLinksIdempotency(f *fixture) {
	const scope = "POST /v1/transfers"
	rec := func(scope, key string) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h", CreatedAt: now, Owner: "A"}
	}
	for _, r := range []orchestrator.IdempotencyRecord{rec(scope, "k1"), rec(scope, "k2"), rec("POST /other", "k3")} {
		reserve(f, r)
	}
	t := f.transfer("1000")
	t.IdempotencyScope, t.IdempotencyKey = scope, "k1"
	f.create(t)
	f.equal("Get of a transfer created with a key", f.get(t.ID), t)

	dup := f.transfer("1000") // the same call: refused
	dup.IdempotencyScope, dup.IdempotencyKey = scope, "k2"
	wantActive(f.T, "Create of a second transfer of the call", f.s.Create(f.ctx, dup), t.ID)

	other := f.transfer("2000") // k3 is reserved in another scope only
	other.IdempotencyScope, other.IdempotencyKey = scope, "k3"
	f.create(other)
	unreserved := f.transfer("3000")
	unreserved.IdempotencyScope, unreserved.IdempotencyKey = scope, "never-reserved"
	f.create(unreserved)

	// A dies: its linked reservation replays the transfer, the others go.
	if n := f.settle("B", now, never); n != 3 {
		f.Errorf("SettleIdempotency = %d, want 3", n)
	}
	got, ok := reserve(f, rec(scope, "k1"))
	want := rec(scope, "k1")
	want.Response = replayOf(t.ID)
	if ok {
		f.Errorf("the linked reservation was deleted")
	} else {
		equalIdem(f, "the linked reservation, settled", got, want)
	}
	if _, ok := reserve(f, rec(scope, "k2")); !ok {
		f.Errorf("the reservation of a refused Create was linked")
	}
	if _, ok := reserve(f, rec("POST /other", "k3")); !ok {
		f.Errorf("a reservation of another scope was linked")
	}
	if _, ok := reserve(f, rec(scope, "never-reserved")); !ok {
		f.Errorf("Create without a reservation made one")
	}
}

// SettleIdempotency answers or deletes the pending reservations of
// replicas without a live heartbeat (and, all of them before ownBefore,
// the caller's), and leaves completed ones and live replicas' alone.
func testSettleIdempotency(f *fixture) {
	const ttl = 30 * time.Second
	f.heartbeat("live", now, ttl)
	f.heartbeat("dead", now.Add(-time.Minute), ttl)
	f.heartbeat("self", now, ttl)
	const scope = "POST /v1/transfers"
	rec := func(key, owner string) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h-" + key, CreatedAt: now, Owner: owner}
	}
	linked := map[string]string{} // key -> transfer id
	for i, r := range []orchestrator.IdempotencyRecord{rec("linked-dead", "dead"), rec("unlinked-dead", "dead"),
		rec("no-owner", ""), rec("linked-live", "live"), rec("unlinked-live", "live"), rec("done-dead", "dead"),
		rec("linked-self", "self"), rec("unlinked-self", "self")} {
		reserve(f, r)
		if strings.HasPrefix(r.Key, "linked-") || r.Key == "done-dead" {
			t := f.transfer(strconv.Itoa(i))
			t.IdempotencyScope, t.IdempotencyKey = scope, r.Key
			f.create(t)
			linked[r.Key] = t.ID
		}
	}
	done := orchestrator.IdempotentResponse{Status: 201, Location: "/v1/transfers/" + linked["done-dead"], Body: []byte(`{"state":"completed"}`)}
	if err := f.s.CompleteIdempotency(f.ctx, scope, "done-dead", now, done); err != nil {
		f.Fatal(err)
	}
	check := func(key, owner string, resp *orchestrator.IdempotentResponse) {
		f.Helper()
		want := rec(key, owner)
		want.Response = resp
		got, ok := reserve(f, want)
		if ok {
			f.Errorf("%s: the reservation is gone", key)
			return
		}
		equalIdem(f, key, got, want)
	}
	checkGone := func(key string) {
		f.Helper()
		if _, ok := reserve(f, rec(key, "checker")); !ok {
			f.Errorf("%s: the reservation is still there", key)
		}
		if err := f.s.DeleteIdempotency(f.ctx, scope, key, now); err != nil { // so that no later Settle sees it
			f.Fatal(err)
		}
	}

	if n := f.settle("self", now, never); n != 3 {
		f.Errorf("SettleIdempotency(self) = %d, want 3 (the dead replica's two and the one without owner)", n)
	}
	check("linked-dead", "dead", replayOf(linked["linked-dead"]))
	checkGone("unlinked-dead")
	checkGone("no-owner")
	check("done-dead", "dead", &done)
	for _, key := range []string{"linked-live", "unlinked-live"} {
		check(key, "live", nil)
	}
	for _, key := range []string{"linked-self", "unlinked-self"} {
		check(key, "self", nil)
	}
	if n := f.settle("self", now, never); n != 0 {
		f.Errorf("a second SettleIdempotency = %d, want 0", n)
	}

	// A process restarted under its own name settles what it left.
	if n := f.settle("self", now, now.Add(time.Microsecond)); n != 2 {
		f.Errorf("SettleIdempotency(self, own) = %d, want 2", n)
	}
	check("linked-self", "self", replayOf(linked["linked-self"]))
	checkGone("unlinked-self")
	check("linked-live", "live", nil)

	// At the end of live's heartbeat its reservations are settled too.
	if n := f.settle("other", now.Add(ttl-time.Microsecond), never); n != 0 {
		f.Errorf("SettleIdempotency before live's heartbeat ended = %d, want 0", n)
	}
	if n := f.settle("other", now.Add(ttl), never); n != 2 {
		f.Errorf("SettleIdempotency after live's heartbeat ended = %d, want 2", n)
	}
	check("linked-live", "live", replayOf(linked["linked-live"]))
	checkGone("unlinked-live")
}

// SettleIdempotency settles the caller's own pending reservations
// created before ownBefore although its heartbeat is live (their request
// ended without recording its response), and leaves its younger ones, its
// completed ones and another live replica's alone.
func testSettleIdempotencyOwnBefore(f *fixture) {
	const ttl = 30 * time.Second
	cutoff := now.Add(-time.Minute)
	f.heartbeat("self", now, ttl)
	f.heartbeat("live", now, ttl)
	const scope = "POST /v1/transfers"
	rec := func(key, owner string, at time.Time) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h-" + key, CreatedAt: at, Owner: owner}
	}
	recs := []orchestrator.IdempotencyRecord{
		rec("linked-old", "self", cutoff.Add(-time.Microsecond)), rec("unlinked-old", "self", cutoff.Add(-time.Hour)),
		rec("linked-at", "self", cutoff), rec("unlinked-young", "self", now), rec("done-old", "self", cutoff.Add(-time.Hour)),
		rec("linked-other", "live", cutoff.Add(-time.Hour)), rec("unlinked-other", "live", cutoff.Add(-time.Hour)),
	}
	linked := map[string]string{} // key -> transfer id
	for i, r := range recs {
		reserve(f, r)
		if strings.HasPrefix(r.Key, "linked-") || r.Key == "done-old" {
			t := f.transfer(strconv.Itoa(i))
			t.IdempotencyScope, t.IdempotencyKey = scope, r.Key
			f.create(t)
			linked[r.Key] = t.ID
		}
	}
	done := orchestrator.IdempotentResponse{Status: 201, Location: "/v1/transfers/" + linked["done-old"], Body: []byte(`{"state":"consulting"}`)}
	if err := f.s.CompleteIdempotency(f.ctx, scope, "done-old", cutoff.Add(-time.Hour), done); err != nil {
		f.Fatal(err)
	}

	if n := f.settle("self", now, cutoff); n != 2 {
		f.Errorf("SettleIdempotency(self, before %s) = %d, want 2 (linked-old, unlinked-old)", cutoff, n)
	}
	for _, r := range recs {
		want := r
		switch r.Key {
		case "unlinked-old":
			if _, ok := reserve(f, rec(r.Key, "checker", now)); !ok {
				f.Errorf("%s: the reservation is still there", r.Key)
			}
			continue
		case "linked-old":
			want.Response = replayOf(linked[r.Key])
		case "done-old":
			want.Response = &done
		}
		got, ok := reserve(f, want)
		if ok {
			f.Errorf("%s: the reservation is gone", r.Key)
			continue
		}
		equalIdem(f, r.Key, got, want)
	}
}

// ---- Purge ----

// Purge deletes closed transfers (terminal, no cleanup owed) updated
// before the cut-off with their signals, and idempotency records created
// before it unless their transfer is still open; nothing else.
func testPurge(f *fixture) {
	cutoff := t0.Add(24 * time.Hour).Truncate(time.Microsecond)
	idem := func(key string, at time.Time) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: "s", Key: key, RequestHash: "h", CreatedAt: at}
	}
	for _, r := range []orchestrator.IdempotencyRecord{idem("old", cutoff.Add(-time.Second)), idem("at", cutoff),
		idem("new", cutoff.Add(time.Second)), idem("old-of-open", cutoff.Add(-time.Hour)), idem("old-of-closed", cutoff.Add(-time.Hour))} {
		reserve(f, r)
	}
	if err := f.s.CompleteIdempotency(f.ctx, "s", "old", cutoff.Add(-time.Second), orchestrator.IdempotentResponse{Status: 201}); err != nil {
		f.Fatal(err)
	}

	oldDone := f.transfer("1")
	oldDone.IdempotencyScope, oldDone.IdempotencyKey = "s", "old-of-closed"
	f.create(oldDone)
	f.setState(oldDone, orchestrator.StateCompleted, cutoff.Add(-time.Minute))
	if err := f.s.PutSignal(f.ctx, oldDone.ID, orchestrator.SignalCancel, 0); err != nil {
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
	oldActive := f.transfer("6")
	oldActive.IdempotencyScope, oldActive.IdempotencyKey = "s", "old-of-open"
	f.create(oldActive)
	f.setState(oldActive, orchestrator.StateConsulting, cutoff.Add(-time.Hour))
	if err := f.s.PutSignal(f.ctx, oldActive.ID, orchestrator.SignalComplete, 0); err != nil {
		f.Fatal(err)
	}
	oldRecovering := f.create(f.transfer("7"))
	f.setState(oldRecovering, orchestrator.StateRecovering, cutoff.Add(-time.Hour))
	oldOwing := f.create(f.transfer("8"))
	f.end(oldOwing, orchestrator.StateFailed, true, cutoff.Add(-50*time.Hour))

	if n := f.purge(cutoff, 0); n != 3 {
		f.Errorf("Purge deleted %d transfers, want 3", n)
	}
	for _, t := range []*orchestrator.Transfer{oldDone, oldCancelled, oldFailed} {
		if _, err := f.s.Get(f.ctx, t.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			f.Errorf("purged %s: Get = %v, want not found", t.ID, err)
		}
	}
	for _, t := range []*orchestrator.Transfer{atCutoff, newDone, oldActive, oldRecovering, oldOwing} {
		f.equal("a transfer Purge must keep", f.get(t.ID), t)
	}
	got, _ := f.list(orchestrator.ListFilter{Limit: 100})
	if want := idsOf(oldOwing, oldRecovering, oldActive, newDone, atCutoff); !slices.Equal(got, want) {
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

	for _, key := range []string{"old", "old-of-closed"} {
		if _, ok := reserve(f, idem(key, cutoff)); !ok {
			f.Errorf("idempotency key %q created before the cut-off survived Purge", key)
		}
	}
	for _, key := range []string{"at", "new", "old-of-open"} {
		if _, ok := reserve(f, idem(key, cutoff)); ok {
			f.Errorf("idempotency key %q was purged", key)
		}
	}
	if n := f.purge(cutoff, 0); n != 0 {
		f.Errorf("second Purge = %d; want 0", n)
	}
}

// Purge deletes at most limit transfers per call, and never open ones.
// The idempotency records past the cut-off go in the first call that
// deletes fewer than limit: one that deleted limit may have left more
// transfers, and leaves the records to the next.
func testPurgeLimit(f *fixture) {
	cutoff := t0.Add(24 * time.Hour).Truncate(time.Microsecond)
	old := orchestrator.IdempotencyRecord{Scope: "s", Key: "old", RequestHash: "h", CreatedAt: cutoff.Add(-time.Hour)}
	reserve(f, old)
	for i := range 5 {
		t := f.create(f.transfer("closed-" + strconv.Itoa(i)))
		f.setState(t, orchestrator.StateCompleted, cutoff.Add(-time.Duration(i+1)*time.Hour))
	}
	active := f.create(f.transfer("active"))
	f.setState(active, orchestrator.StateDialing, cutoff.Add(-time.Hour))
	owing := f.create(f.transfer("owing"))
	f.end(owing, orchestrator.StateCancelled, true, cutoff.Add(-time.Hour))
	for i, want := range []int{2, 2, 1, 0} {
		if n := f.purge(cutoff, 2); n != want {
			f.Errorf("Purge #%d with limit 2 = %d, want %d", i+1, n, want)
		}
		if i == 1 {
			if _, ok := reserve(f, old); ok {
				f.Errorf("the idempotency key created before the cut-off went in a Purge that filled its limit")
			}
		}
	}
	if _, ok := reserve(f, old); !ok {
		f.Errorf("the idempotency key created before the cut-off survived the Purge that found the end")
	}
	got, _ := f.list(orchestrator.ListFilter{Limit: 100})
	if want := idsOf(owing, active); !slices.Equal(got, want) {
		f.Errorf("List after the Purges = %v, want %v", got, want)
	}
}

func testPing(f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		f.Errorf("Ping: %v", err)
	}
}
