package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// Two secrets valid at once, as during a rotation.
var (
	secretOld = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-of-thirty-two-bytes!!"))
	secretNew = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-secret-of-thirty-two-bytes!!"))
)

// verify checks a Standard Webhooks signature by plain HMAC-SHA256, not
// with the code under test: some v1 signature must match.
func verify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", h.Get("webhook-id"), h.Get("webhook-timestamp"), body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// receiver records what arrives and answers as fail says.
type receiver struct {
	t    *testing.T
	mu   sync.Mutex
	got  []hit
	fail func(id string, n int) (code int, retryAfter string) // n: this id's attempt, from 1
	seen map[string]int
	// arrived is signalled on every accepted delivery.
	arrived chan struct{}
}

type hit struct {
	id       string
	transfer string
	seq      int64
	typ      string
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, seen: map[string]int{}, arrived: make(chan struct{}, 1<<16),
		fail: func(string, int) (int, string) { return 0, "" }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !verify(secretOld, r.Header, body) || !verify(secretNew, r.Header, body) {
			t.Errorf("signature of %s does not verify with both secrets: %q", r.Header.Get("webhook-id"), r.Header.Get("webhook-signature"))
		}
		ts, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp %q is not now", r.Header.Get("webhook-timestamp"))
		}
		var p struct {
			Type string `json:"type"`
			Seq  int64  `json:"seq"`
			ID   string `json:"transfer_id"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("payload: %v", err)
		}
		id := r.Header.Get("webhook-id")
		rc.mu.Lock()
		rc.seen[id]++
		code, ra := rc.fail(id, rc.seen[id])
		if code == 0 {
			rc.got = append(rc.got, hit{id: id, transfer: p.ID, seq: p.Seq, typ: p.Type})
		}
		rc.mu.Unlock()
		if code != 0 {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.WriteHeader(code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		rc.arrived <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

// waitN waits for n accepted deliveries in all.
func (rc *receiver) waitN(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		rc.mu.Lock()
		have := len(rc.got)
		rc.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-rc.arrived:
		case <-timeout:
			t.Fatalf("%d deliveries arrived, want %d", have, n)
		}
	}
}

func (rc *receiver) hits() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.got...)
}

// render is a payload with what the receiver checks.
func render(ev orchestrator.Event) ([]byte, error) {
	return json.Marshal(map[string]any{"type": ev.Type, "seq": ev.Seq, "transfer_id": ev.TransferID, "at": ev.At})
}

// seed saves transfers with n events each, across several saves (some
// saves carry two events, as a save recording two transitions does).
func seed(t *testing.T, s *memory.Store, tenant string, from, transfers, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+transfers; i++ {
		tr := &orchestrator.Transfer{ID: fmt.Sprintf("tr_%s%04d", strings.Repeat("0", 22), i), Tenant: tenant,
			State: orchestrator.StatePending, CreatedAt: time.Now(), UpdatedAt: time.Now(),
			Request: orchestrator.Request{Provider: "fake", Call: orchestrator.CallRef{Domain: "d", User: fmt.Sprint(i)}}}
		ev := func(seq int) orchestrator.Event {
			typ := orchestrator.EventStateChanged
			switch seq {
			case 1:
				typ = orchestrator.EventCreated
			case n:
				typ = orchestrator.EventCompleted
			}
			return orchestrator.Event{ID: fmt.Sprintf("evt_%s_%d", tr.ID, seq), Tenant: tenant, TransferID: tr.ID,
				Seq: int64(seq), Type: typ, At: time.Now()}
		}
		tr.Outbox = []orchestrator.Event{ev(1)}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		for seq := 2; seq <= n; seq += 2 {
			tr.Outbox = []orchestrator.Event{ev(seq)}
			if seq+1 <= n {
				tr.Outbox = append(tr.Outbox, ev(seq+1))
			}
			if err := s.Update(ctx, tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// holdFirst is an endpoint that answers 204, except that it holds the
// first attempt, after closing entered, until release is closed (or sent
// on); got counts the attempts.
func holdFirst(t *testing.T) (srv *httptest.Server, entered <-chan struct{}, release chan struct{}, got *atomic.Int64) {
	in := make(chan struct{})
	release, got = make(chan struct{}), new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got.Add(1) == 1 {
			close(in)
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, in, release, got
}

// newDispatcher runs a dispatcher until the test ends, set up by setup
// before it runs; its settled reports each attempt it recorded.
func newDispatcher(t *testing.T, st webhooks.Store, dir webhooks.Directory, cfg webhooks.Config, setup ...func(*webhooks.Dispatcher)) (*webhooks.Dispatcher, *settled) {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = 2 * time.Millisecond
	}
	d := webhooks.New(cfg, st, dir, render, zerolog.Nop(), prometheus.NewRegistry())
	w := &settled{st: st, ch: make(chan webhooks.Delivery, 1<<16)}
	if cfg.Owner == "b" {
		w = shared // the second replica of a test reports with the first
	}
	shared = w
	webhooks.OnFinish(d, func(dl webhooks.Delivery) { w.ch <- dl })
	for _, f := range setup {
		f(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, w
}

func endpoint(url string, types ...orchestrator.EventType) webhooks.Static {
	return webhooks.Static{"acme": {{ID: "crm", URL: url, Secrets: []string{secretOld, secretNew}, Types: types}}}
}

// checkOrder fails on a transfer whose deliveries arrived out of seq
// order, or with gaps, and returns how many deliveries were duplicates.
func checkOrder(t *testing.T, hits []hit, transfers, n int) int {
	t.Helper()
	last := map[string]int64{}
	ids := map[string]bool{}
	dups := 0
	for _, h := range hits {
		if ids[h.id] {
			dups++
			continue
		}
		ids[h.id] = true
		if h.seq != last[h.transfer]+1 {
			t.Errorf("transfer %s: seq %d arrived after %d", h.transfer, h.seq, last[h.transfer])
		}
		last[h.transfer] = h.seq
	}
	if len(last) != transfers {
		t.Errorf("%d transfers delivered, want %d", len(last), transfers)
	}
	for tr, s := range last {
		if s != int64(n) {
			t.Errorf("transfer %s: last seq %d, want %d", tr, s, n)
		}
	}
	return dups
}

// TestDeliverInOrderWithRetries: every event arrives, signed with both
// secrets (checked by plain HMAC), in seq order per transfer, although a
// fifth of first attempts fail and two replicas deliver from one store.
func TestDeliverInOrderWithRetries(t *testing.T) {
	const transfers, n = 40, 5
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	rc.fail = func(id string, attempt int) (int, string) {
		if attempt == 1 && len(id)%5 == 0 || attempt == 1 && strings.HasSuffix(id, "3") {
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}
	// Half the events exist before the replicas start, half arrive while
	// they deliver.
	seed(t, s, "acme", 0, transfers/2, n)
	_, a := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a"})
	newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "b"})
	seed(t, s, "acme", transfers/2, transfers/2, n)
	rc.waitN(t, transfers*n)
	a.idle(t)
	if dups := checkOrder(t, rc.hits(), transfers, n); dups != 0 {
		t.Errorf("%d duplicates with no crash", dups)
	}
	ds, _, err := st.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending, webhooks.StatusDead}})
	if err != nil || len(ds) != 0 {
		t.Fatalf("%d deliveries not delivered (%v)", len(ds), err)
	}
}

// TestTypeFilterAndTenants: an endpoint with a filter gets only those
// types, and a tenant's endpoint never gets another tenant's events.
func TestTypeFilterAndTenants(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	seed(t, s, "other", 0, 3, 4)
	seed(t, s, "acme", 10, 3, 4)
	newDispatcher(t, st, endpoint(srv.URL, orchestrator.EventCompleted), webhooks.Config{})
	rc.waitN(t, 3)
	// The three arrivals were enqueued in one scan of acme's outbox, so
	// everything that would ever be sent is in the store now.
	ctx := context.Background()
	ds, _, _ := st.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if len(ds) != 3 {
		t.Errorf("%d deliveries for acme, want its 3 completions", len(ds))
	}
	for _, d := range ds {
		if d.Type != orchestrator.EventCompleted {
			t.Errorf("delivery of a %s", d.Type)
		}
	}
	if ds, _, _ := st.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "other"}); len(ds) != 0 {
		t.Errorf("%d deliveries of a tenant without endpoints", len(ds))
	}
	for _, h := range rc.hits() {
		if h.typ != string(orchestrator.EventCompleted) {
			t.Errorf("received %+v", h)
		}
	}
}

// settled counts finished attempts and lets a test wait until the store
// has no pending delivery left.
type settled struct {
	st webhooks.Store
	ch chan webhooks.Delivery
}

// shared is the settled of the last dispatcher made (tests run one at a
// time: none is parallel).
var shared *settled

// idle waits until no delivery is pending.
func (s *settled) idle(t *testing.T) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		if n, _, err := s.st.DeliveryBacklog(context.Background()); err == nil && n == 0 {
			return
		}
		select {
		case <-s.ch:
		case <-timeout:
			t.Fatal("deliveries still pending")
		}
	}
}

// TestRetryAfterHonoured: a 503 with Retry-After schedules the next
// attempt no sooner than it asks, beyond the short back-off.
func TestRetryAfterHonoured(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	rc.fail = func(string, int) (int, string) { return http.StatusServiceUnavailable, "120" }
	seed(t, s, "acme", 0, 1, 1)
	_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{})
	dl := <-w.ch
	if dl.Status != webhooks.StatusPending || dl.LastCode != http.StatusServiceUnavailable {
		t.Fatalf("after a 503: %+v", dl)
	}
	if wait := dl.NextAttempt.Sub(dl.UpdatedAt); wait < 120*time.Second {
		t.Errorf("next attempt in %s, want at least the Retry-After of 120s", wait)
	}
}

// TestDeadLetterAndRedeliver: a delivery failing past MaxAge becomes a
// dead letter that does not hold back the transfer's later events; the
// receiver sees the gap in seq; a redelivery sends it again with the same
// webhook-id once the receiver accepts it.
func TestDeadLetterAndRedeliver(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	var broken sync.Mutex
	refuse := true
	rc.fail = func(id string, _ int) (int, string) {
		broken.Lock()
		defer broken.Unlock()
		if refuse && strings.HasSuffix(id, "_2") {
			return http.StatusInternalServerError, ""
		}
		return 0, ""
	}
	seed(t, s, "acme", 0, 1, 3)
	// MaxAge of a nanosecond: the first failure is past it.
	d, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{MaxAge: time.Nanosecond})
	rc.waitN(t, 2)
	w.idle(t)
	h := rc.hits()
	if h[0].seq != 1 || h[1].seq != 3 {
		t.Fatalf("arrived %+v, want seq 1 then 3 (2 is dead)", h)
	}
	ctx := context.Background()
	dead, _, err := d.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusDead}})
	if err != nil || len(dead) != 1 || dead[0].Seq != 2 || dead[0].LastCode != http.StatusInternalServerError {
		t.Fatalf("dead letters %+v (%v), want seq 2 after a 500", dead, err)
	}
	if _, err := d.Redeliver(ctx, "other", dead[0].ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Errorf("another tenant redelivered it: %v", err)
	}
	broken.Lock()
	refuse = false
	broken.Unlock()
	if _, err := d.Redeliver(ctx, "acme", dead[0].ID); err != nil {
		t.Fatal(err)
	}
	rc.waitN(t, 3)
	if h := rc.hits()[2]; h.seq != 2 || h.id != dead[0].EventID {
		t.Errorf("redelivered %+v, want seq 2 with webhook-id %s", h, dead[0].EventID)
	}
}

// TestCrashedReplicaLeaseExpires: a delivery claimed by a replica that
// died mid-attempt is sent by another once the lease expires, with the
// same webhook-id, and the dead replica's late result is ignored.
func TestCrashedReplicaLeaseExpires(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	seed(t, s, "acme", 0, 1, 2)
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	evs, _ := s.Events(ctx, orchestrator.EventFilter{Tenant: "acme"})
	var ds []webhooks.Delivery
	now := time.Now().UTC()
	for _, ev := range evs {
		body, _ := render(ev)
		ds = append(ds, webhooks.Delivery{ID: webhooks.DeliveryID(key, ev.ID), Tenant: "acme", Endpoint: "crm", EventID: ev.ID,
			TransferID: ev.TransferID, Seq: ev.Seq, Pos: ev.Pos, Type: ev.Type, Payload: body, Status: webhooks.StatusPending,
			NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now})
	}
	if err := st.EnqueueDeliveries(ctx, key, 0, evs[len(evs)-1].Pos, ds); err != nil {
		t.Fatal(err)
	}
	// The dead replica's claim: a lease that has run out.
	claimed, err := st.ClaimDeliveries(ctx, "dead", now, time.Millisecond, 10, nil)
	if err != nil || len(claimed) != 1 || claimed[0].Seq != 1 {
		t.Fatalf("claimed %+v (%v), want seq 1 only (2 waits for it)", claimed, err)
	}
	newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "alive"})
	rc.waitN(t, 2)
	if h := rc.hits(); h[0].id != ds[0].EventID || h[1].id != ds[1].EventID {
		t.Fatalf("arrived %+v", h)
	}
	late := claimed[0]
	late.Status, late.LastError = webhooks.StatusDead, "late"
	if _, ok, err := st.FinishDelivery(ctx, late); ok || err != nil {
		t.Errorf("the dead replica's late result was recorded (%v, %v)", ok, err)
	}
}

// TestSecretsNeverInErrors: a bad secret is refused without repeating it.
func TestSecretsNeverInErrors(t *testing.T) {
	for _, sec := range []string{"whsec_not*base64*at*all*but*long*enough", "sk_live_abcdefghijklmnopqrstuvwxyz", "whsec_c2hvcnQ="} {
		err := webhooks.ValidSecret(sec)
		if err == nil {
			t.Errorf("secret %q accepted", sec)
			continue
		}
		if strings.Contains(err.Error(), strings.TrimPrefix(sec, "whsec_")) {
			t.Errorf("error %q repeats the secret", err)
		}
	}
	if err := webhooks.ValidSecret(secretNew); err != nil {
		t.Errorf("a 32-byte secret refused: %v", err)
	}
}

// TestRedeliveryDuringLastAttemptWins: an operator redelivers a delivery
// while its last attempt before the deadline is in flight, and is told
// "pending, with a fresh maximum age". The attempt fails; its claim's
// deadline has passed, but the redelivery wins: the delivery is tried
// again at once (not recorded dead), stays pending until the new deadline
// with the next attempt one back-off away, and no dead letter is counted.
func TestRedeliveryDuringLastAttemptWins(t *testing.T) {
	ctx := context.Background()
	st := memory.NewDeliveries(memory.New())
	var mu sync.Mutex
	attempts := 0
	inFlight, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			inFlight <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	// Made a MaxAge ago: due for its one last try, at the deadline.
	deadline := time.Now().UTC().Add(-time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	dl := webhooks.Delivery{ID: webhooks.DeliveryID(key, "evt_tr_a_1"), Tenant: "acme", Endpoint: "crm", EventID: "evt_tr_a_1",
		TransferID: "tr_a", Seq: 1, Pos: 1, Type: orchestrator.EventCreated, Payload: []byte(`{"seq":1}`),
		Status: webhooks.StatusPending, NextAttempt: deadline, Deadline: deadline,
		CreatedAt: deadline.Add(-24 * time.Hour), UpdatedAt: deadline}
	if err := st.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{dl}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const backoff = time.Hour
	d := webhooks.New(webhooks.Config{Owner: "r1", MinBackoff: backoff, MaxBackoff: backoff}, st, endpoint(srv.URL), render,
		zerolog.Nop(), reg)
	drained := make(chan error, 1)
	go func() { drained <- d.Drain(ctx) }()
	<-inFlight
	r, err := d.Redeliver(ctx, "acme", dl.ID)
	if err != nil || r.Status != webhooks.StatusPending || !r.Deadline.After(time.Now()) {
		t.Fatalf("redeliver answered %+v (%v), want pending with a fresh deadline", r, err)
	}
	close(release)
	// Drain returns once nothing is due: after the redelivery's attempt.
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	got, _, err := st.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || len(got) != 1 {
		t.Fatalf("deliveries %+v (%v)", got, err)
	}
	g := got[0]
	mu.Lock()
	n := attempts
	mu.Unlock()
	if n != 2 || g.Status != webhooks.StatusPending || !g.Deadline.Equal(r.Deadline) || g.LastCode != http.StatusServiceUnavailable {
		t.Errorf("after a redelivery during the last attempt: %d attempts, stored %+v; want 2 attempts (the one in flight and "+
			"the redelivery's), pending until %v, last code 503", n, g, r.Deadline)
	}
	if wait := g.NextAttempt.Sub(g.UpdatedAt); wait > backoff || wait < backoff/2 {
		t.Errorf("the redelivery's failed attempt is retried in %s, want one back-off (%s with jitter)", wait, backoff)
	}
	if dead := counter(t, reg, "transferd_webhook_dead_letters_total"); dead != 0 {
		t.Errorf("transferd_webhook_dead_letters_total = %v, want 0: the redelivery kept it alive", dead)
	}
}

// TestRedeliveredDeadLetterRetriesSoon: the back-off restarts at a
// redelivery. A dead letter that failed many times, redelivered, fails
// again and is retried after the first back-off, not the longest.
func TestRedeliveredDeadLetterRetriesSoon(t *testing.T) {
	ctx := context.Background()
	st := memory.NewDeliveries(memory.New())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	// Dead after ten attempts, as a day of failures leaves it.
	at := time.Now().UTC().Add(-time.Hour)
	key := webhooks.EndpointKey("acme", "crm")
	dl := webhooks.Delivery{ID: webhooks.DeliveryID(key, "evt_tr_a_1"), Tenant: "acme", Endpoint: "crm", EventID: "evt_tr_a_1",
		TransferID: "tr_a", Seq: 1, Pos: 1, Type: orchestrator.EventCreated, Payload: []byte(`{"seq":1}`),
		Status: webhooks.StatusDead, Attempts: 10, LastCode: http.StatusServiceUnavailable, LastError: "the endpoint answered 503",
		NextAttempt: at, Deadline: at, CreatedAt: at.Add(-24 * time.Hour), UpdatedAt: at}
	if err := st.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{dl}); err != nil {
		t.Fatal(err)
	}
	const minBackoff, maxBackoff = time.Minute, time.Hour
	d := webhooks.New(webhooks.Config{MinBackoff: minBackoff, MaxBackoff: maxBackoff}, st, endpoint(srv.URL), render,
		zerolog.Nop(), prometheus.NewRegistry())
	if _, err := d.Redeliver(ctx, "acme", dl.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || len(got) != 1 || got[0].Attempts != 11 || got[0].Status != webhooks.StatusPending {
		t.Fatalf("deliveries %+v (%v), want one pending after its 11th attempt", got, err)
	}
	if wait := got[0].NextAttempt.Sub(got[0].UpdatedAt); wait > minBackoff {
		t.Errorf("a redelivered dead letter that failed again is retried in %s, want the first back-off (at most %s)", wait, minBackoff)
	}
}

// counter is the value of a counter without labels in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// TestValidSecretLength: a secret holds 24 to 64 bytes once decoded;
// the length of its base64 text, padding included, says 24 for 22 and 23
// bytes and 66 for 65 and 66.
func TestValidSecretLength(t *testing.T) {
	for n, ok := range map[int]bool{22: false, 23: false, 24: true, 25: true, 63: true, 64: true, 65: false, 66: false} {
		sec := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
		if err := webhooks.ValidSecret(sec); (err == nil) != ok {
			t.Errorf("a secret of %d bytes: %v, want accepted %v", n, err, ok)
		}
	}
}

// A receiver that answers a redirect has not accepted the delivery: the
// dispatcher follows no redirect (a webhook sent on to wherever the answer
// points would carry its signed body there), so the attempt failed and
// the delivery is tried again. Counted as delivered (any status below 400
// taken for success, a mutation no test caught), the event was never
// received, and nothing retried it: at-least-once delivery was lost.
func TestARedirectIsAFailedAttempt(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			s := memory.New()
			st := memory.NewDeliveries(s)
			rc, srv := newReceiver(t)
			rc.fail = func(string, int) (int, string) { return code, "" }
			seed(t, s, "acme", 0, 1, 1)
			_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{})
			dl := <-w.ch
			if dl.Status != webhooks.StatusPending || dl.LastCode != code || dl.LastError == "" {
				t.Errorf("after a %d: status %s, last code %d, error %q; want pending, to be tried again", code, dl.Status, dl.LastCode, dl.LastError)
			}
		})
	}
}
