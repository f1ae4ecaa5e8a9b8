package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// openRaw returns a store in a fresh schema and a connection to that
// schema, both closed when the test ends.
func openRaw(t *testing.T) (*postgres.Store, *pgx.Conn) {
	t.Helper()
	return openRawWith(t, "")
}

// openRawWith is openRaw with the store's URL asking for isolation as
// its sessions' default_transaction_isolation, if set.
func openRawWith(t *testing.T, isolation string) (*postgres.Store, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	storeURL := url
	if isolation != "" {
		storeURL = withParam(url, "default_transaction_isolation", isolation)
	}
	s, err := postgres.Open(ctx, storeURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return s, conn
}

// batchIDs mints ids that sort in the order they are minted.
type batchIDs struct {
	at time.Time
	n  int
}

// transfer returns a new pending transfer of user's call, with its
// transfer.created event.
func (b *batchIDs) transfer(user string) *orchestrator.Transfer {
	b.n++
	at := b.at.Add(time.Duration(b.n) * 10 * time.Millisecond)
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(at), State: orchestrator.StatePending, CreatedAt: at, UpdatedAt: at,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: user}, Target: "1010"}}
	event(tr, orchestrator.EventCreated, "", "")
	return tr
}

// event appends an event to t's outbox as the engine does.
func event(t *orchestrator.Transfer, typ orchestrator.EventType, from, to orchestrator.State) {
	t.EventSeq++
	t.Outbox = append(t.Outbox, orchestrator.Event{ID: fmt.Sprintf("evt_%s_%d", t.ID, t.EventSeq), Tenant: orchestrator.DefaultTenant,
		TransferID: t.ID, Seq: t.EventSeq, Type: typ, At: t.CreatedAt.Add(time.Duration(t.EventSeq) * time.Millisecond), From: from, To: to})
}

// move changes t's state with its event, as a transition does.
func move(t *orchestrator.Transfer, to orchestrator.State) {
	event(t, orchestrator.EventStateChanged, t.State, to)
	t.State = to
}

// storedEvents returns the ids of the events stored, in position order.
func storedEvents(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, _ := conn.Query(context.Background(), `SELECT id FROM events ORDER BY pos`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func outbox(ts ...*orchestrator.Transfer) []string {
	var ids []string
	for _, t := range ts {
		for _, ev := range t.Outbox {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// createAll creates ts one by one and clears their outboxes.
func createAll(t *testing.T, s *postgres.Store, ts ...*orchestrator.Transfer) {
	t.Helper()
	for _, tr := range ts {
		if err := s.Create(context.Background(), tr); err != nil {
			t.Fatalf("Create(%s): %v", tr.ID, err)
		}
		tr.Outbox = nil
	}
}

// In one batch, a save with a stale version fails with a version conflict
// and one of an unknown transfer is not found: they write neither their
// records nor their events, and the other saves of the batch are written
// with theirs.
func TestBatchVersionConflictIsOwn(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a, b, c := ids.transfer("100"), ids.transfer("101"), ids.transfer("102")
	createAll(t, s, a, b, c)
	before := storedEvents(t, conn)
	stale := b.Clone()
	move(b, orchestrator.StateHolding)
	if err := s.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	before = append(before, outbox(b)...)
	b.Outbox = nil

	move(a, orchestrator.StateHolding)
	move(stale, orchestrator.StateCancelled)
	move(c, orchestrator.StateHolding)
	unknown := ids.transfer("103")
	unknown.Version = 1
	errs := postgres.SaveInOneBatch(s, a, stale, c, unknown)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("saves at their versions: %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], orchestrator.ErrVersionConflict) {
		t.Errorf("the stale save = %v, want a version conflict", errs[1])
	}
	if orchestrator.KindOf(errs[3]) != orchestrator.KindNotFound {
		t.Errorf("the save of an unknown transfer = %v, want not found", errs[3])
	}
	if a.Version != 2 || c.Version != 2 || stale.Version != 1 {
		t.Errorf("versions after the batch: %d, %d, stale %d; want 2, 2, 1", a.Version, c.Version, stale.Version)
	}
	for _, want := range []*orchestrator.Transfer{a, b, c} {
		got, err := s.Get(ctx, want.ID)
		if err != nil || got.Version != want.Version || got.State != want.State {
			t.Errorf("Get(%s) = %+v, %v; want %s at version %d", want.ID, got, err, want.State, want.Version)
		}
	}
	if got, want := storedEvents(t, conn), append(before, outbox(a, c)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// The updates of a batch are one statement (mergedUpdateSQL in commit.go),
// with the verdicts and events of one statement each: a stale save and a
// save of an unknown transfer write nothing, the others write their rows
// and their events (none, one or two) in lock order, each event's snapshot
// its own save's record. WriteUpdates fails if the statement fell back to
// one per save, so a merged statement the server refused could not hide
// behind the fallback.
func TestMergedUpdates(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a, b, c, d := ids.transfer("700"), ids.transfer("701"), ids.transfer("702"), ids.transfer("703")
	createAll(t, s, a, b, c, d)
	stale := b.Clone()
	move(b, orchestrator.StateHolding)
	if err := s.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Outbox = nil
	before := storedEvents(t, conn)

	move(a, orchestrator.StateHolding)
	move(stale, orchestrator.StateCancelled)
	move(c, orchestrator.StateHolding)
	event(c, orchestrator.EventCancelled, "", "")
	d.Owner = "replica-b" // a save with no event
	unknown := ids.transfer("704")
	unknown.Version = 1
	saved, err := postgres.WriteUpdates(s, true, d, c, unknown, stale, a) // the committer puts them in id order
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, false, true}; !slices.Equal(saved, want) {
		t.Fatalf("saved = %v, want %v", saved, want)
	}
	for _, want := range []*orchestrator.Transfer{a, b, c, d} {
		got, err := s.Get(ctx, want.ID)
		if err != nil || got.Version != want.Version || got.State != want.State || got.Owner != want.Owner {
			t.Errorf("Get(%s) = %+v, %v; want %s at version %d owned by %q", want.ID, got, err, want.State, want.Version, want.Owner)
		}
	}
	if got, want := storedEvents(t, conn), append(before, outbox(a, c)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	for _, ev := range outbox(a, c) {
		var same bool
		if err := conn.QueryRow(ctx, `SELECT e.snapshot::text = t.record::text FROM events e JOIN transfers t ON t.id = e.transfer_id
			WHERE e.id = $1`, ev).Scan(&same); err != nil || !same {
			t.Errorf("event %s: snapshot is its save's record: %v, %v", ev, same, err)
		}
	}
}

// The merged updates run their generic plan, planned once per
// connection, and leave the connection's planner settings as they were.
// Left to choose, the server plans the statement again at its first five
// executions, and under load at most of the later ones: a custom plan
// knows the arrays' lengths, so it looks cheaper. A server without the
// setting (older than PostgreSQL 12) is left to choose.
func TestMergedUpdatesPlannedOnce(t *testing.T) {
	for _, planMode := range []bool{true, false} {
		t.Run(fmt.Sprint("plan_cache_mode=", planMode), func(t *testing.T) {
			ctx := context.Background()
			// One connection: the batches' and the check's.
			url := withParam(inSchema(baseURL(t), newSchema(t, baseURL(t))), "pool_max_conns", "1")
			s, err := postgres.Open(ctx, url)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(s.Close)
			if !postgres.PlanMode(s) {
				t.Fatal("the server's plan_cache_mode went unnoticed")
			}
			postgres.SetPlanMode(s, planMode)
			ids := batchIDs{at: time.Now()}
			a, b := ids.transfer("720"), ids.transfer("721")
			createAll(t, s, a, b)
			const batches = 8 // more than the five custom plans the server tries first
			for i := range batches {
				move(a, orchestrator.StateHolding)
				move(b, orchestrator.StateHolding)
				saved, err := postgres.WriteUpdates(s, true, a, b)
				if err != nil || !slices.Equal(saved, []bool{true, true}) {
					t.Fatalf("batch %d: saved %v, %v", i, saved, err)
				}
				a.Outbox, b.Outbox = nil, nil
			}
			generic, custom, defaults, err := postgres.Plans(s, postgres.MergedUpdateSQL)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case planMode && (generic != batches || custom != 0):
				t.Errorf("the merged updates ran %d generic and %d custom plans, want %d generic", generic, custom, batches)
			case !planMode && custom == 0:
				t.Errorf("without the setting, the merged updates ran %d generic and no custom plans: the server did not choose", generic)
			}
			if !defaults {
				t.Error("after the batches the connection's planner settings are not their defaults")
			}
		})
	}
}

// Two saves of one transfer at one version in one batch: one is written,
// with its own events and none of the other's, and the other is a version
// conflict.
func TestBatchTwoSavesOfOneTransfer(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a, b := ids.transfer("400"), ids.transfer("401")
	createAll(t, s, a, b)
	before := storedEvents(t, conn)
	twin := a.Clone()
	move(a, orchestrator.StateHolding)
	move(twin, orchestrator.StateCancelled)
	event(twin, orchestrator.EventCancelled, "", "")
	move(b, orchestrator.StateHolding)
	errs := postgres.SaveInOneBatch(s, a, twin, b)
	if errs[2] != nil {
		t.Fatalf("the other transfer's save: %v", errs[2])
	}
	won, lost := a, twin
	if errs[0] != nil {
		won, lost = twin, a
		errs[0], errs[1] = errs[1], errs[0]
	}
	if errs[0] != nil || !errors.Is(errs[1], orchestrator.ErrVersionConflict) {
		t.Fatalf("the two saves = %v, %v; want one written and one version conflict", errs[0], errs[1])
	}
	if got, err := s.Get(ctx, a.ID); err != nil || got.State != won.State || got.Version != 2 || lost.Version != 1 {
		t.Errorf("Get = %+v, %v; want %s at version 2 (the loser at 1: %d)", got, err, won.State, lost.Version)
	}
	if got, want := storedEvents(t, conn), append(before, outbox(won, b)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want the written save's and the other transfer's, %v", got, want)
	}
}

// Creates that share a batch are decided one by one, in order: the first
// create of a call wins and a later one in the same batch is refused
// naming it; a create of an id taken in the same batch is refused; a
// refused create writes neither its events nor its idempotency link; and
// the others of the batch are saved. (The SQLite store's
// TestCreatesShareABatch.)
func TestCreatesShareABatch(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	const scope = "POST /v1/transfers"
	for _, key := range []string{"k-first", "k-second"} {
		if _, ok, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h",
			CreatedAt: time.Now(), Owner: "A"}); err != nil || !ok {
			t.Fatalf("ReserveIdempotency(%s) = %v, %v", key, ok, err)
		}
	}
	ids := batchIDs{at: time.Now()}
	first := ids.transfer("201")
	first.IdempotencyScope, first.IdempotencyKey = scope, "k-first"
	second := ids.transfer("201") // the same call
	second.IdempotencyScope, second.IdempotencyKey = scope, "k-second"
	other := ids.transfer("202")
	sameID := ids.transfer("203")
	sameID.ID = other.ID
	sameID.Outbox[0].TransferID = other.ID

	errs := postgres.SaveInOneBatch(s, first, second, other, sameID)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("creates of free calls: %v, %v", errs[0], errs[2])
	}
	var active *orchestrator.ActiveTransferError
	if orchestrator.KindOf(errs[1]) != orchestrator.KindConflict || !errors.As(errs[1], &active) || active.ID != first.ID {
		t.Fatalf("second create of the call = %v, want a conflict naming %s", errs[1], first.ID)
	}
	if orchestrator.KindOf(errs[3]) != orchestrator.KindConflict || errors.As(errs[3], &active) {
		t.Fatalf("create of an existing id = %v, want a conflict (not of the call)", errs[3])
	}
	if second.Version != 0 || sameID.Version != 0 {
		t.Errorf("refused creates set the caller's Version to %d, %d", second.Version, sameID.Version)
	}
	for _, tr := range []*orchestrator.Transfer{first, other} {
		got, err := s.Get(ctx, tr.ID)
		if err != nil {
			t.Fatalf("Get(%s): %v", tr.ID, err)
		}
		if got.Request.Call.User != tr.Request.Call.User || got.Version != 1 {
			t.Errorf("Get(%s) = user %s version %d, want %s version 1", tr.ID, got.Request.Call.User, got.Version, tr.Request.Call.User)
		}
	}
	if got, want := storedEvents(t, conn), outbox(first, other); !slices.Equal(got, want) {
		t.Errorf("events = %v, want the saved creates' only, %v", got, want)
	}
	for key, want := range map[string]string{"k-first": first.ID, "k-second": ""} {
		var linked *string
		if err := conn.QueryRow(ctx, `SELECT transfer_id FROM idempotency WHERE scope = $1 AND key = $2`, scope, key).Scan(&linked); err != nil {
			t.Fatal(err)
		}
		got := ""
		if linked != nil {
			got = *linked
		}
		if got != want {
			t.Errorf("reservation %s linked to %q, want %q", key, got, want)
		}
	}
}

// A save whose statement the server refuses (a terminal transfer made
// active again while another holds its call: the unique index) gets its
// refusal, and the other saves of the batch, before and after it, are
// written with their events.
func TestBatchRefusedSaveIsOwn(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	ended, a, c := ids.transfer("300"), ids.transfer("301"), ids.transfer("302")
	createAll(t, s, ended, a, c)
	move(ended, orchestrator.StateFailed)
	if err := s.Update(ctx, ended); err != nil {
		t.Fatal(err)
	}
	ended.Outbox = nil
	holder := ids.transfer("300")
	createAll(t, s, holder)
	before := storedEvents(t, conn)

	move(a, orchestrator.StateHolding)
	move(ended, orchestrator.StatePending) // its call is held by holder
	move(c, orchestrator.StateHolding)
	fresh := ids.transfer("304")
	errs := postgres.SaveInOneBatch(s, a, ended, c, fresh)
	if errs[0] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("the other saves: %v, %v, %v", errs[0], errs[2], errs[3])
	}
	var active *orchestrator.ActiveTransferError
	if orchestrator.KindOf(errs[1]) != orchestrator.KindConflict || !errors.As(errs[1], &active) || active.ID != holder.ID {
		t.Fatalf("the refused save = %v, want a conflict naming %s", errs[1], holder.ID)
	}
	if got, err := s.Get(ctx, ended.ID); err != nil || got.State != orchestrator.StateFailed || got.Version != 2 {
		t.Errorf("the refused transfer = %+v, %v; want failed at version 2", got, err)
	}
	if got, want := storedEvents(t, conn), append(before, outbox(a, c, fresh)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// A create whose own statement the server refuses (here a trigger; a
// statement timeout on a lock, a full disk, a server shutting down) wrote
// nothing: the refusal rolled the batch's transaction back, and its other
// saves were written again without it. Its verdict says so
// (ErrNotSaved, of kind unavailable), as SQLite's does for a create whose
// writes were taken back. Found by review: it was the server's error, of
// no kind, which says the save is unknown; the engine then looked for the
// transfer in the background for minutes, and the client was told that
// the store's answer was lost.
func TestBatchRefusedCreateIsNotSaved(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a := ids.transfer("600")
	createAll(t, s, a)
	before := storedEvents(t, conn)
	for _, q := range []string{
		`CREATE FUNCTION refuse_now() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.owner = 'refused' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER refuse_now BEFORE INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION refuse_now()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	notSaved := func(what string, err error, tr *orchestrator.Transfer) {
		t.Helper()
		if !errors.Is(err, orchestrator.ErrNotSaved) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
			t.Errorf("%s = %v (kind %v), want ErrNotSaved of kind unavailable", what, err, orchestrator.KindOf(err))
		}
		if _, err := s.Get(ctx, tr.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			t.Errorf("%s: the refused create was stored (Get: %v)", what, err)
		}
	}

	move(a, orchestrator.StateHolding)
	refused, fresh := ids.transfer("601"), ids.transfer("602")
	refused.Owner = "refused"
	errs := postgres.SaveInOneBatch(s, a, refused, fresh)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("the other saves of the batch: %v, %v", errs[0], errs[2])
	}
	notSaved("the refused create of a batch", errs[1], refused)
	if got, want := storedEvents(t, conn), append(before, outbox(a, fresh)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}

	alone := ids.transfer("603")
	alone.Owner = "refused"
	notSaved("a refused Create", s.Create(ctx, alone), alone)
	// Nor does it hold the call.
	createAll(t, s, ids.transfer("603"))
}

// A batch whose commit fails writes nothing, and every save in it gets
// the failure.
func TestBatchCommitFailureFailsEverySave(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a, b := ids.transfer("400"), ids.transfer("401")
	createAll(t, s, a, b)
	before := storedEvents(t, conn)
	refuseAtCommit(t, conn)
	move(a, orchestrator.StateHolding)
	move(b, orchestrator.StateHolding)
	b.Owner = "refused"
	fresh := ids.transfer("402")
	errs := postgres.SaveInOneBatch(s, a, b, fresh)
	for i, err := range errs {
		if err == nil || orchestrator.KindOf(err) == orchestrator.KindConflict {
			t.Errorf("save %d of the batch = %v, want the commit's failure", i, err)
		}
	}
	if a.Version != 1 || b.Version != 1 || fresh.Version != 0 {
		t.Errorf("versions after the failed batch: %d, %d, %d; want 1, 1, 0", a.Version, b.Version, fresh.Version)
	}
	for _, tr := range []*orchestrator.Transfer{a, b} {
		if got, err := s.Get(ctx, tr.ID); err != nil || got.Version != 1 || got.State != orchestrator.StatePending {
			t.Errorf("Get(%s) = %+v, %v; want pending at version 1", tr.ID, got, err)
		}
	}
	if _, err := s.Get(ctx, fresh.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Errorf("the create of the failed batch was stored (Get: %v)", err)
	}
	if got := storedEvents(t, conn); !slices.Equal(got, before) {
		t.Errorf("events = %v, want %v", got, before)
	}
	// The committer goes on: the next save is written.
	if err := s.Update(ctx, a); err != nil {
		t.Errorf("Update after the failed batch: %v", err)
	}
}

// Saves after Close fail and do not wait.
func TestSaveAfterClose(t *testing.T) {
	s, _ := openRaw(t)
	ids := batchIDs{at: time.Now()}
	s.Close()
	if err := s.Create(context.Background(), ids.transfer("500")); err == nil {
		t.Errorf("Create after Close succeeded")
	}
}

// Of concurrent Creates for one call through two stores on one database
// (two replicas, two committers, two transactions at once) exactly one
// succeeds, and the others name it.
func TestCreateConcurrentSameCallTwoReplicas(t *testing.T) {
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	var stores [2]*postgres.Store
	for i := range stores {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	ids := batchIDs{at: time.Now()}
	const n = 16
	ts := make([]*orchestrator.Transfer, n)
	for i := range ts {
		ts[i] = ids.transfer("600")
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ts {
		wg.Go(func() { errs[i] = stores[i%2].Create(ctx, ts[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("two concurrent Creates for one call succeeded: %s and %s", ts[winner].ID, ts[i].ID)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no concurrent Create succeeded: %v", errs)
	}
	for i, err := range errs {
		var active *orchestrator.ActiveTransferError
		if i != winner && (!errors.As(err, &active) || active.ID != ts[winner].ID) {
			t.Errorf("losing Create %d = %v, want a conflict naming %s", i, err, ts[winner].ID)
		}
	}
}

// A batch the server rolls back whole (a deadlock's victim, a
// serialization failure: SQLSTATE class 40) is written again; no save of
// it is reported refused for it. One that is rolled back every time fails
// every save, having written nothing.
func TestBatchRolledBackByTheServerIsWrittenAgain(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Now()}
	a, b, c := ids.transfer("500"), ids.transfer("501"), ids.transfer("502")
	createAll(t, s, a, b, c)
	// The trigger makes a deadlock's victim of the transaction that saves
	// an owner's row while a sequence (not rolled back with it) is below
	// the owner's limit: "once" the first time, "always" every time.
	for _, q := range []string{
		`CREATE SEQUENCE victims`,
		`CREATE FUNCTION victim() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.owner = 'always' OR (NEW.owner = 'once' AND nextval('victims') = 1) THEN
				RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER victim BEFORE UPDATE ON transfers FOR EACH ROW EXECUTE FUNCTION victim()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	move(a, orchestrator.StateHolding)
	move(b, orchestrator.StateHolding)
	b.Owner = "once"
	before := storedEvents(t, conn)
	if errs := postgres.SaveInOneBatch(s, a, b); errs[0] != nil || errs[1] != nil {
		t.Fatalf("saves of a batch rolled back once = %v, want both saved", errs)
	}
	if a.Version != 2 || b.Version != 2 {
		t.Errorf("versions %d, %d; want 2, 2", a.Version, b.Version)
	}
	if got, want := storedEvents(t, conn), append(slices.Clone(before), outbox(a, b)...); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v (each once)", got, want)
	}

	a.Outbox, b.Outbox = nil, nil
	move(a, orchestrator.StateDialing)
	move(c, orchestrator.StateHolding)
	c.Owner = "always"
	before = storedEvents(t, conn)
	for i, err := range postgres.SaveInOneBatch(s, a, c) {
		if err == nil || orchestrator.KindOf(err) == orchestrator.KindConflict {
			t.Errorf("save %d of a batch rolled back every time = %v, want a store failure", i, err)
		}
	}
	if got, err := s.Get(ctx, a.ID); err != nil || got.Version != 2 {
		t.Errorf("Get(a) = %+v, %v; want version 2", got, err)
	}
	if got := storedEvents(t, conn); !slices.Equal(got, before) {
		t.Errorf("events = %v, want %v", got, before)
	}
}

// BenchmarkBatchOfUpdates writes batches of eight updates, each with one
// event, as one merged statement and as one statement each (the batches
// of a busy replica: about eight updates per transaction at 32 transfers
// at a time). Run against a database server on the same machine, ns/op is
// transferd's and the server's work for a batch.
func BenchmarkBatchOfUpdates(b *testing.B) {
	for _, merged := range []bool{true, false} {
		name := "one-statement-each"
		if merged {
			name = "merged"
		}
		b.Run(name, func(b *testing.B) { timeBatchesOfUpdates(b, open(b), merged) })
	}
}

// timeBatchesOfUpdates times batches of eight updates with one event each
// on s, written in one statement (merged) or one statement each.
func timeBatchesOfUpdates(b *testing.B, s *postgres.Store, merged bool) {
	b.Helper()
	ids := batchIDs{at: time.Now()}
	ts := make([]*orchestrator.Transfer, 8)
	for i := range ts {
		ts[i] = ids.transfer(fmt.Sprint(800 + i))
		if err := s.Create(context.Background(), ts[i]); err != nil {
			b.Fatal(err)
		}
		ts[i].Outbox = nil
	}
	states := []orchestrator.State{orchestrator.StateHolding, orchestrator.StateDialing}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		for _, t := range ts {
			t.Outbox = nil
			move(t, states[n%2])
		}
		saved, err := postgres.WriteUpdates(s, merged, ts...)
		if err != nil || slices.Contains(saved, false) {
			b.Fatalf("saved %v, %v", saved, err)
		}
	}
}

// refuseAtCommit adds to conn's schema a deferred constraint trigger that
// refuses, at commit, any transfer owned by "refused": a batch with one
// fails as a whole when it commits.
func refuseAtCommit(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	for _, q := range []string{
		`CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.owner = 'refused' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON transfers
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()`,
	} {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}
