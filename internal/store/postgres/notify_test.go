package postgres_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// heardLong bounds the waits for a notification; only a failing test
// waits that long.
const heardLong = 30 * time.Second

// hearing records what a Store's listener tells (ListenEvents): each
// tenant heard, in order ("" for every tenant), and each failure.
type hearing struct {
	mu     sync.Mutex
	heard  []string
	failed int
	errs   []error
	bell   chan struct{} // rung at each call
}

func listenTo(s *postgres.Store) *hearing {
	h := &hearing{bell: make(chan struct{}, 1)}
	s.ListenEvents(func(tenant string) {
		h.mu.Lock()
		h.heard = append(h.heard, tenant)
		h.mu.Unlock()
		h.ring()
	}, func(err error) {
		h.mu.Lock()
		h.failed++
		h.errs = append(h.errs, err)
		h.mu.Unlock()
		h.ring()
	})
	return h
}

func (h *hearing) ring() {
	select {
	case h.bell <- struct{}{}:
	default:
	}
}

// await waits until cond holds of what was heard, and returns it.
func (h *hearing) await(t *testing.T, what string, cond func(heard []string, failed int) bool) []string {
	t.Helper()
	deadline := time.After(heardLong)
	for {
		h.mu.Lock()
		heard, failed := append([]string(nil), h.heard...), h.failed
		h.mu.Unlock()
		if cond(heard, failed) {
			return heard
		}
		select {
		case <-h.bell:
		case <-deadline:
			t.Fatalf("%s: not within %s; heard %q, %d failures", what, heardLong, heard, failed)
		}
	}
}

// started waits until the listener listens: its first "" is heard.
func (h *hearing) started(t *testing.T) {
	t.Helper()
	h.await(t, "the listener starts", func(heard []string, _ int) bool { return len(heard) > 0 })
}

// after waits until tenant is heard after the first n calls, and returns
// what was heard after them.
func (h *hearing) after(t *testing.T, n int, tenant string) []string {
	t.Helper()
	heard := h.await(t, "hear "+tenant, func(heard []string, _ int) bool {
		return len(heard) > n && contains(heard[n:], tenant)
	})
	return heard[n:]
}

// now returns what was heard so far, and the failures.
func (h *hearing) now() (heard []string, errs []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.heard...), append([]error(nil), h.errs...)
}

func (h *hearing) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.heard)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// replicas opens two stores on one schema, as two replicas of one
// database, closed with the test, and returns the schema's URL too.
func replicas(t *testing.T) (a, b *postgres.Store, url string) {
	t.Helper()
	a, url = openWithURL(t)
	b, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return a, b, url
}

// ofTenant makes tr and its outbox's events tenant's.
func ofTenant(tr *orchestrator.Transfer, tenant string) *orchestrator.Transfer {
	tr.Tenant = tenant
	for i := range tr.Outbox {
		tr.Outbox[i].Tenant = tenant
	}
	return tr
}

// A replica hears the tenant of each batch with events another replica
// commits, and not its own batches (its engine announced them already):
// notifications arrive in commit order, so a replica that heard its own
// would hear acme, which it saved, before globex, which the other saved
// after.
func TestListenHearsTheOtherReplicasSaves(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicas(t)
	ha, hb := listenTo(a), listenTo(b)
	ha.started(t)
	hb.started(t)
	na, nb := ha.count(), hb.count()
	ids := batchIDs{at: time.Now()}
	tr := ofTenant(ids.transfer("600"), "acme")
	if err := a.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, nb, "acme"); got[0] != "acme" {
		t.Errorf("b heard %q after a's create, want acme first", got)
	}
	tr.Outbox = nil
	move(tr, orchestrator.StateHolding)
	ofTenant(tr, "acme")
	if err := a.Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
	nb = hb.count()
	if err := b.Create(ctx, ofTenant(ids.transfer("601"), "globex")); err != nil {
		t.Fatal(err)
	}
	if got := ha.after(t, na, "globex"); len(got) != 1 || got[0] != "globex" {
		t.Errorf("a heard %q, want only globex, b's: not its own saves of acme", got)
	}
	// b heard a's update, before its own create (which it does not hear).
	if got := hb.after(t, nb-1, "acme"); !contains(got, "acme") {
		t.Errorf("b heard %q after a's update, want acme", got)
	}
}

// An import of transfers with events notifies the other replicas of
// their tenants, as a batch of saves does: an event stream open on
// another replica reads them at once, not at its next poll.
func TestListenHearsAnImport(t *testing.T) {
	a, b, _ := replicas(t)
	hb := listenTo(b)
	hb.started(t)
	n := hb.count()
	ids := batchIDs{at: time.Now()}
	tr := ofTenant(ids.transfer("615"), "initech")
	tr.Version = 1
	if len(tr.Outbox) == 0 {
		t.Fatal("the imported transfer has no events to announce")
	}
	if err := a.Import(context.Background(), []*orchestrator.Transfer{tr}); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, n, "initech"); got[0] != "initech" {
		t.Errorf("heard %q after the import, want initech", got)
	}
}

// A batch that does not commit notifies nobody: the notification is sent
// in its transaction. A deferred trigger fails the commit of a batch of
// acme's saves; the next batch, of globex, is the first heard.
func TestListenHearsNothingOfABatchRolledBack(t *testing.T) {
	ctx := context.Background()
	a, b, url := replicas(t)
	refuseAtCommit(t, connect(t, url))
	hb := listenTo(b)
	hb.started(t)
	n := hb.count()
	ids := batchIDs{at: time.Now()}
	refused := ofTenant(ids.transfer("610"), "acme")
	refused.Owner = "refused"
	if errs := postgres.SaveInOneBatch(a, refused); errs[0] == nil {
		t.Fatal("the refused batch was saved")
	}
	if err := a.Create(ctx, ofTenant(ids.transfer("611"), "globex")); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, n, "globex"); got[0] != "globex" {
		t.Errorf("heard %q, want globex first: the batch rolled back notified", got)
	}
}

// A listener whose connection ends (its server process terminated, as a
// restart of the server or a dropped connection does) says so, connects
// again, tells every tenant ("": what was sent meanwhile is lost), and
// hears the other replica's saves again.
func TestListenConnectsAgainAfterItsConnectionEnds(t *testing.T) {
	ctx := context.Background()
	a, b, url := replicas(t)
	conn := connect(t, url)
	hb := listenTo(b)
	hb.started(t)
	if !b.Listening() {
		t.Fatal("Listening is false once listening started")
	}
	pid := postgres.ListenerPID(b)
	n := hb.count()
	var ended bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)).Scan(&ended); err != nil || !ended {
		t.Fatalf("terminate the listener's server process %d: %v, %v", pid, ended, err)
	}
	hb.await(t, "the listener fails and connects again", func(heard []string, failed int) bool {
		return failed >= 1 && len(heard) > n && contains(heard[n:], "")
	})
	if postgres.ListenerPID(b) == pid {
		t.Fatal("the listener reports the terminated server process still")
	}
	n = hb.count()
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("620"), "acme")); err != nil {
		t.Fatal(err)
	}
	hb.after(t, n, "acme")
}

// Close stops the listener: it returns once the listener has ended, and
// the listener's server process is gone.
func TestCloseStopsTheListener(t *testing.T) {
	ctx := context.Background()
	a, url := openWithURL(t)
	conn := connect(t, url)
	b, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	hb := listenTo(b)
	hb.started(t)
	pid := postgres.ListenerPID(b)
	b.Close()
	if b.Listening() {
		t.Error("Listening after Close")
	}
	var alive bool
	deadline := time.Now().Add(heardLong)
	for {
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int32(pid)).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener's server process %d is still there after Close", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing is called after Close.
	n := hb.count()
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("630"), "acme")); err != nil {
		t.Fatal(err)
	}
	if got := hb.count(); got != n {
		t.Errorf("heard %d more after Close", got-n)
	}
}

// A listener first asked for after Close is not started: it would hold a
// connection nothing closes.
func TestListenAfterCloseStartsNothing(t *testing.T) {
	s, _ := openWithURL(t)
	s.Close()
	listenTo(s)
	if postgres.ListenerStarted(s) {
		t.Error("ListenEvents after Close started a listener")
	}
}

// A batch whose tenants would not fit in one notification names none:
// every tenant is told ("").
func TestListenHearsEveryTenantForABatchOfMany(t *testing.T) {
	a, b, _ := replicas(t)
	hb := listenTo(b)
	hb.started(t)
	n := hb.count()
	ids := batchIDs{at: time.Now()}
	var batch []*orchestrator.Transfer
	for i := range 128 {
		batch = append(batch, ofTenant(ids.transfer(strings.Repeat("7", 3)+string(rune('a'+i%26))+strings.Repeat("x", i)),
			strings.Repeat(string(rune('a'+i%26)), 60)+string(rune('0'+i/26))))
	}
	for i, err := range postgres.SaveInOneBatch(a, batch...) {
		if err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	if got := hb.after(t, n, ""); len(got) != 1 {
		t.Errorf("heard %q for a batch of 128 tenants, want one \"\"", got)
	}
}

// probeWatch is a connection that listens on a store's channel, as a
// replica's listener does, to see its probes go out: the listener judges
// a probe before it sends the next (tests set a probe wait shorter than
// the quiet spell), so a probe seen proves the one before it was judged.
type probeWatch struct {
	conn   *pgx.Conn
	prefix string
}

func watchProbes(t *testing.T, url string, s *postgres.Store) *probeWatch {
	t.Helper()
	conn := connect(t, url)
	if _, err := conn.Exec(context.Background(), `LISTEN `+pgx.Identifier{postgres.Channel(s)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return &probeWatch{conn: conn, prefix: postgres.ProbePrefix(s)}
}

// next waits until n more of the store's probes are sent.
func (w *probeWatch) next(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), heardLong)
	defer cancel()
	for n > 0 {
		note, err := w.conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("wait for %d more probes: %v", n, err)
		}
		if strings.HasPrefix(note.Payload, w.prefix) {
			n--
		}
	}
}

// LISTEN succeeds behind a pooler in transaction mode too, where nothing
// sent on the channel is delivered: a listener says it listens only once
// it hears a probe of its own, sent through the pool. A deaf listener
// has listened and probed, and is not listening; once notifications are
// delivered, it hears the next probe, listens, and tells every tenant.
func TestListeningOnlyOnceItHearsItsProbe(t *testing.T) {
	s, url := openWithURL(t)
	w := watchProbes(t, url, s)
	postgres.SetQuietCheck(s, 5*time.Millisecond)
	postgres.SetProbeWait(s, heardLong)
	postgres.SetDeaf(s, true)
	h := listenTo(s)
	w.next(t, 2)
	if s.Listening() {
		t.Error("Listening before the listener heard its probe")
	}
	if heard, errs := h.now(); len(heard) != 0 || len(errs) != 0 {
		t.Errorf("before a probe was heard: heard %q, failures %v", heard, errs)
	}
	postgres.SetDeaf(s, false)
	h.started(t)
	if !s.Listening() {
		t.Error("not Listening once the listener heard its probe")
	}
}

// A listener whose probes are not heard (behind a pooler in transaction
// mode) is not listening, says so once, not at every check, and keeps
// its connection: connecting again would not help. Once notifications
// are delivered again it listens, and tells every tenant once (what was
// sent meanwhile was not heard); later probes wake nobody.
func TestListenerThatDoesNotHearItsProbe(t *testing.T) {
	ctx := context.Background()
	a, b, url := replicas(t)
	w := watchProbes(t, url, b)
	postgres.SetQuietCheck(b, 5*time.Millisecond)
	postgres.SetProbeWait(b, time.Millisecond)
	postgres.SetDeaf(b, true)
	hb := listenTo(b)
	hb.await(t, "the listener finds it does not hear", func(_ []string, failed int) bool { return failed > 0 })
	pid := postgres.ListenerPID(b)
	// Each probe seen was sent after the one before was judged unheard.
	w.next(t, 4)
	heard, errs := hb.now()
	if len(errs) != 1 || !errors.Is(errs[0], postgres.ErrNotDelivered) {
		t.Errorf("failures %v, want one: notifications are not delivered", errs)
	}
	if len(heard) != 0 {
		t.Errorf("heard %q while deaf", heard)
	}
	if b.Listening() {
		t.Error("Listening while its probes are not heard")
	}
	if got := postgres.ListenerPID(b); got != pid {
		t.Errorf("the listener connected again (server process %d, then %d)", pid, got)
	}
	postgres.SetProbeWait(b, heardLong)
	postgres.SetDeaf(b, false)
	hb.started(t)
	if !b.Listening() {
		t.Error("not Listening once a probe was heard again")
	}
	// Later probes, heard, wake nobody: notifications arrive in commit
	// order, so b hears a's save after the probes sent before it.
	w.next(t, 3)
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("640"), "acme")); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, 0, "acme"); !slices.Equal(got, []string{"", "acme"}) {
		t.Errorf("heard %q, want every tenant once, then acme", got)
	}
	if _, errs := hb.now(); len(errs) != 1 {
		t.Errorf("failures %v, want the one", errs)
	}
	if got := postgres.ListenerPID(b); got != pid {
		t.Errorf("the listener connected again (server process %d, then %d)", pid, got)
	}
}

// A probe wakes no tenant, neither of the replica that sent it nor of
// another: each replica hears the other's save, sent after several
// probes of both, and nothing before it but the "" of its start.
func TestProbesWakeNobody(t *testing.T) {
	ctx := context.Background()
	a, b, url := replicas(t)
	wa, wb := watchProbes(t, url, a), watchProbes(t, url, b)
	for _, s := range []*postgres.Store{a, b} {
		postgres.SetQuietCheck(s, 5*time.Millisecond)
		postgres.SetProbeWait(s, heardLong)
	}
	ha, hb := listenTo(a), listenTo(b)
	ha.started(t)
	hb.started(t)
	wa.next(t, 3)
	wb.next(t, 3)
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("650"), "acme")); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, ofTenant(ids.transfer("651"), "globex")); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, 0, "acme"); !slices.Equal(got, []string{"", "acme"}) {
		t.Errorf("b heard %q, want its start, then a's acme", got)
	}
	if got := ha.after(t, 0, "globex"); !slices.Equal(got, []string{"", "globex"}) {
		t.Errorf("a heard %q, want its start, then b's globex", got)
	}
}

// BenchmarkBatchOfUpdatesNotify is BenchmarkBatchOfUpdates's merged batch
// (eight updates, one event each, of one tenant) with and without the
// notification of its events, for the notification's cost on the hot
// path. Run against a database server on the same machine, ns/op is
// transferd's and the server's work for a batch.
func BenchmarkBatchOfUpdatesNotify(b *testing.B) {
	for _, v := range []struct {
		name             string
		notify, listened bool
	}{{"without", false, false}, {"with", true, false}, {"with-a-replica-listening", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			s, url := openWithURL(b)
			postgres.SetNotify(s, v.notify)
			if v.listened {
				other, err := postgres.Open(context.Background(), url)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(other.Close)
				other.ListenEvents(func(string) {}, nil)
			}
			timeBatchesOfUpdates(b, s, true)
		})
	}
}
