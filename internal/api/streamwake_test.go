package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/wake"
)

// never is a poll interval no test outlives: a stream that polls no
// sooner is sent what a save's wake tells it, or nothing.
const never = time.Hour

// failAfter bounds how long a test waits for what should come at once;
// only a failing test waits that long.
const failAfter = 30 * time.Second

// wakeEnv is an events server whose streams poll every poll and are woken
// by saved; its engine's saves notify saved unless opts say otherwise.
// Its streams send a keep-alive after keepAlive without an event, and
// read the outbox then too: a test of the wake makes it as rare as the
// poll.
func wakeEnv(t *testing.T, poll, keepAlive time.Duration, opts ...func(*orchestrator.Config)) (*eventsEnv, *wake.Tenants) {
	t.Helper()
	t.Cleanup(api.SetStreamKeepAlive(keepAlive)) // runs after the server's Close
	store := memory.New()
	saved := new(wake.Tenants)
	return eventsServer(t, store, prometheus.NewRegistry(), api.Config{Idempotency: store, EventsSaved: saved, EventStreamPoll: poll}, opts...), saved
}

// openStream opens GET /v1/events+query; the stream ends failAfter from
// now, so that one sent nothing fails the test (sse.next) rather than
// hanging it. close ends it sooner, as a client that leaves.
func (e *eventsEnv) openStream(t *testing.T, key, query string) (s *sse, close func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("stream %s: %d", query, res.StatusCode)
	}
	close = func() {
		cancel()
		res.Body.Close()
	}
	t.Cleanup(close)
	return &sse{res: res, sc: bufio.NewScanner(res.Body), end: cancel}, close
}

// createManual creates a manual transfer with key and waits until it
// waits for the client (the fake's target answers at once): nothing more
// happens to it until the client completes or cancels.
func (e *eventsEnv) createManual(t *testing.T, key, tenant, user string) string {
	t.Helper()
	tr := decodeBody[struct{ ID string }](t, e.req(t, "POST", "/v1/transfers", key,
		`{"provider":"netsapiens","call":{"domain":"acme.example","user":"`+user+`"},"target":"1010","completion":"manual"}`), http.StatusAccepted)
	ctx, cancel := context.WithTimeout(orchestrator.WithTenant(context.Background(), tenant), failAfter)
	defer cancel()
	got, err := e.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if err != nil || got.State != orchestrator.StateConsulting || !got.Answered {
		t.Fatalf("manual transfer %s: %v, %v; want it consulting, answered", tr.ID, got, err)
	}
	return tr.ID
}

// A stream that would next poll in an hour is sent a transfer's events
// as its saves happen: each save that writes events wakes it. The wake
// keeps the stream's scope: a stream of one transfer is sent its events,
// another tenant's stream none of them. Without the wake no stream here
// is sent anything.
func TestStreamIsWokenBySaves(t *testing.T) {
	e, _ := wakeEnv(t, never, never)
	manual := e.createManual(t, writeKey, "default", "1001")

	all, _ := e.openStream(t, readKey, "")
	one, _ := e.openStream(t, readKey, "?transfer_id="+manual)
	other, _ := e.openStream(t, otherReadKey, "")

	// A create: the tenant's stream is sent it.
	created := decodeBody[struct{ ID string }](t, e.req(t, "POST", "/v1/transfers", writeKey,
		`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1002"},"target":"1010"}`), http.StatusAccepted)
	if _, ev := all.next(t); ev.TransferID != created.ID || ev.Type != "transfer.created" {
		t.Fatalf("the tenant's stream sent %s %s first, want %s transfer.created", ev.TransferID, ev.Type, created.ID)
	}
	// A change (the client completes the manual transfer): the stream of
	// that transfer is sent it, and none of the other's.
	if res := e.req(t, "POST", "/v1/transfers/"+manual+"/complete", writeKey, ""); res.StatusCode >= 300 {
		t.Fatalf("complete: %d", res.StatusCode)
	}
	for {
		_, ev := one.next(t)
		if ev.TransferID != manual {
			t.Fatalf("the stream of %s sent an event of %s", manual, ev.TransferID)
		}
		if ev.Type == "transfer.completed" {
			break
		}
	}
	// The other tenant's stream was woken by all that and sent nothing:
	// its first event is its own tenant's.
	theirs := decodeBody[struct{ ID string }](t, e.req(t, "POST", "/v1/transfers", otherWriteKey,
		`{"provider":"netsapiens","call":{"domain":"acme.example","user":"2001"},"target":"1010"}`), http.StatusAccepted)
	if _, ev := other.next(t); ev.TransferID != theirs.ID {
		t.Fatalf("the other tenant's stream sent %s first, want its own %s", ev.TransferID, theirs.ID)
	}
}

// An event saved while a stream reads the outbox (after its read, before
// it waits) is sent at once, not at the next poll: the stream takes the
// wake's channel before it reads, so the save's notification closes the
// channel it then waits on. The engine here notifies nothing; the one
// notification that matters is the test's, made inside the stream's
// handler right after its second read returned nothing, once a
// transfer's events are all saved.
func TestStreamMissesNoSaveBetweenItsReadAndItsWait(t *testing.T) {
	e, saved := wakeEnv(t, never, never, func(c *orchestrator.Config) { c.EventsSaved = nil })
	var sv savedInARead
	firstRead := make(chan struct{})
	// Called by the one stream's handler only.
	defer api.OnStreamRead(sv.at(e, 2, func(reads int) {
		switch reads {
		case 1:
			close(firstRead)
		case 2:
			saved.Notify("default")
		}
	}))()

	s, _ := e.openStream(t, readKey, "")
	<-firstRead
	// The stream waits; this wakes it for its second read, after which
	// the transfer is saved.
	saved.Notify("default")
	sv.sentFirst(t, s)
}

// savedInARead is a transfer that a stream's read hook (api.OnStreamRead)
// saves inside the stream's handler, right after one of its reads.
type savedInARead struct {
	mu     sync.Mutex
	reads  int
	id     string
	failed error // why it could not be saved
}

// at returns the hook: at the read-th read it saves a transfer for the
// default tenant, then calls also (nil: nothing) with the reads so far.
func (sv *savedInARead) at(e *eventsEnv, read int, also func(reads int)) func() {
	return func() {
		sv.mu.Lock()
		defer sv.mu.Unlock()
		sv.reads++
		if sv.reads == read {
			sv.id, sv.failed = e.saveATransfer()
		}
		if also != nil {
			also(sv.reads)
		}
	}
}

// sentFirst fails t unless the first event s sends is the saved
// transfer's transfer.created.
func (sv *savedInARead) sentFirst(t *testing.T, s *sse) {
	t.Helper()
	_, ev := s.next(t)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.failed != nil {
		t.Fatal(sv.failed)
	}
	if ev.TransferID != sv.id || ev.Type != "transfer.created" {
		t.Fatalf("the stream sent %s %s first, want %s transfer.created", ev.TransferID, ev.Type, sv.id)
	}
}

// saveATransfer creates a transfer for the default tenant and waits for
// its end, when all its events are saved; it returns its id.
func (e *eventsEnv) saveATransfer() (string, error) {
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/transfers",
		strings.NewReader(`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1003"},"target":"1010"}`))
	req.Header.Set("Authorization", "Bearer "+writeKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var tr struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("create: %d, %v", res.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(orchestrator.WithTenant(context.Background(), "default"), failAfter)
	defer cancel()
	if got, err := e.eng.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !got.State.Terminal() {
		return "", fmt.Errorf("transfer %s did not end: %v", tr.ID, err)
	}
	return tr.ID, nil
}

// Many streams are each sent a save's events; with none open, saves
// notify nobody. A stream whose client leaves stops listening: the count
// of listeners goes back to what it was.
func TestStreamsManyAndNoneAndLeaving(t *testing.T) {
	e, saved := wakeEnv(t, never, never)
	// No stream: saves notify nobody, and nothing listens.
	e.start(t, writeKey, "1000")
	if n := saved.Listeners(); n != 0 {
		t.Fatalf("%d listeners before any stream", n)
	}

	const n = 50
	streams := make([]*sse, n)
	closes := make([]func(), n)
	for i := range streams {
		streams[i], closes[i] = e.openStream(t, readKey, "")
	}
	if got := saved.Listeners(); got != n {
		t.Fatalf("%d listeners with %d streams open", got, n)
	}
	id := e.start(t, writeKey, "1001")
	for i, s := range streams {
		if _, ev := s.next(t); ev.TransferID != id || ev.Type != "transfer.created" {
			t.Fatalf("stream %d sent %s %s first, want %s transfer.created", i, ev.TransferID, ev.Type, id)
		}
	}
	for _, c := range closes {
		c()
	}
	// The handlers see their clients leave and return; an hour's poll
	// does not keep them.
	deadline := time.Now().Add(failAfter)
	for saved.Listeners() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d listeners left after every stream's client left", saved.Listeners())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A stream opened later is woken as the first were.
	s, _ := e.openStream(t, readKey, "")
	id = e.start(t, writeKey, "1002")
	if _, ev := s.next(t); ev.TransferID != id {
		t.Fatalf("a later stream sent %s first, want %s", ev.TransferID, id)
	}
}

// The events another replica saves wake nothing here: streams still read
// them at their poll. The engine here notifies nothing, standing for the
// other replica.
func TestStreamPollsForWhatNoWakeTells(t *testing.T) {
	e, _ := wakeEnv(t, 10*time.Millisecond, never, func(c *orchestrator.Config) { c.EventsSaved = nil })
	s, _ := e.openStream(t, readKey, "")
	id := e.start(t, writeKey, "1001")
	if _, ev := s.next(t); ev.TransferID != id || ev.Type != "transfer.created" {
		t.Fatalf("the stream sent %s %s first, want %s transfer.created", ev.TransferID, ev.Type, id)
	}
}

// A stream that polls seldom still sends its keep-alive comment when it
// is due: it waits for the poll, a save or the keep-alive, whichever is
// first.
func TestStreamKeepsAliveBetweenRarePolls(t *testing.T) {
	e, _ := wakeEnv(t, never, 20*time.Millisecond)
	s, _ := e.openStream(t, readKey, "")
	for s.sc.Scan() {
		if strings.HasPrefix(s.sc.Text(), ": keep-alive") {
			return
		}
	}
	t.Fatalf("the stream ended without a keep-alive: %v", s.sc.Err())
}

// A save wakes the streams of its tenant only: another tenant's stream,
// waiting after its first read, is not woken by a whole transfer's
// saves (its wake's channel stays open), and is woken by its own
// tenant's. Every save woke every stream of the replica, whatever its
// tenant.
func TestStreamIsNotWokenByAnotherTenantsSaves(t *testing.T) {
	e, saved := wakeEnv(t, never, never)
	waits := make(chan (<-chan struct{}), 1)
	defer api.OnStreamWait(func(woken <-chan struct{}) {
		select {
		case waits <- woken:
		default:
		}
	})()
	e.openStream(t, otherReadKey, "")
	woken := <-waits
	// Ended: each of its saves has told the engine's EventsSaved.
	if _, err := e.saveATransfer(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
		t.Fatal("another tenant's saves woke the stream")
	default:
	}
	saved.Notify(otherTenant)
	select {
	case <-woken:
	case <-time.After(failAfter):
		t.Fatal("the stream's own tenant's notification did not wake it")
	}
}

// While every replica's saves wake the streams (Config.EventsHeard), a
// stream that nothing woke polls at EventStreamSafetyPoll, and while they
// do not, at EventStreamPoll: the one set to an hour here is never the one
// that brings the transfer's event, which no save announces.
func TestStreamPollsSlowerWhileEventsAreHeard(t *testing.T) {
	for _, heard := range []bool{true, false} {
		t.Run(fmt.Sprint("heard=", heard), func(t *testing.T) {
			t.Cleanup(api.SetStreamKeepAlive(never))
			store := memory.New()
			poll, safety := 10*time.Millisecond, never
			if heard {
				poll, safety = never, 10*time.Millisecond
			}
			e := eventsServer(t, store, prometheus.NewRegistry(), api.Config{Idempotency: store, EventsSaved: new(wake.Tenants),
				EventStreamPoll: poll, EventStreamSafetyPoll: safety, EventsHeard: func() bool { return heard }},
				func(c *orchestrator.Config) { c.EventsSaved = nil })
			s, _ := e.openStream(t, readKey, "")
			id := e.start(t, writeKey, "1001")
			if _, ev := s.next(t); ev.TransferID != id || ev.Type != "transfer.created" {
				t.Fatalf("the stream sent %s %s first, want %s transfer.created", ev.TransferID, ev.Type, id)
			}
		})
	}
}

// A save that wakes a stream whose last read was a poll that found
// nothing is read at once: the gap between reads (an hour here) counts
// from the last read a save woke or that sent events, not from a poll's.
// The save is made inside the stream's handler, right after its poll's
// read; counted from that read, the gap kept the event back for an hour.
func TestStreamGapDoesNotFollowAnEmptyPoll(t *testing.T) {
	t.Cleanup(api.SetStreamGap(never)) // runs after the server's Close
	e, _ := wakeEnv(t, 20*time.Millisecond, never)
	var sv savedInARead
	// Saved after the second read: the first poll's, which found nothing.
	defer api.OnStreamRead(sv.at(e, 2, nil))()
	s, _ := e.openStream(t, readKey, "")
	sv.sentFirst(t, s)
}
