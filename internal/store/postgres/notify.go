package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Notifications of saved events (LISTEN/NOTIFY). A replica's saves wake
// its own event streams and webhook dispatcher (orchestrator.Config.
// EventsSaved), but another replica's saves reached them only at their
// next poll of the outbox. So each batch of saves that writes events also
// sends one notification, in its own transaction, naming the tenants of
// its events: the server delivers it once the batch commits, and never
// for a batch rolled back. Every replica listens on a connection of its
// own (ListenEvents) and wakes the streams of the tenants named.
//
// One notification per batch, not per event or save: it rides in the
// statement that takes the outbox lock, so a batch costs no statement
// and no round trip more. The server serializes the commits of
// notifying transactions (a lock held from the notification's queueing
// to the commit's end); the batches that write events are serialized
// already, by the outbox lock, until their commit.
//
// The channel is named after the events table's oid: replicas of one
// database and schema share it, and deployments in other schemas of the
// database (the tests') hear nothing of one another. A payload is the
// sending Store's token, then the tenants, separated by spaces (tenant
// names have none); a listener ignores its own Store's, whose saves its
// engine announced already. Tenant names are not secrets; nothing else
// is sent.
//
// LISTEN succeeds behind a connection pooler in transaction mode
// (PgBouncer) too, but no notification ever reaches the listener's
// connection there: a transaction's server connection, not the client's,
// is the one that listened. So the listener proves that it hears. It
// sends a probe of its own on the channel through the pool, as saves send
// theirs, once it listens and after each quiet spell, and counts itself
// listening (Listening) only once it hears one. A probe's payload is one
// word, the Store's token, probeMark and the probe's number: every
// listener, of this version or of the one before, ignores a payload of
// fewer than two words, so a probe never wakes another replica's streams.

const (
	// maxPayload bounds a notification's payload below the server's
	// limit (8000 bytes). A batch whose tenants would not fit names none
	// (anyTenant): each listener then wakes every stream.
	maxPayload = 7000
	// anyTenant stands, in a payload, for every tenant.
	anyTenant = "*"
	// listenCheck is how long the listener waits for a notification
	// before it checks that its connection still answers and that it
	// still hears its probe: a server that vanished without closing it
	// (a partition, a host gone) would leave it waiting for ever, with
	// every stream polling at its slow rate.
	listenCheck = 30 * time.Second
	// probeWait bounds the wait for a probe to be heard. A notification
	// reaches an idle listener within milliseconds of its commit; the
	// bound leaves room for a busy server and a slow network before
	// notifications are said not to be delivered. Listening is false from
	// the start until a probe is heard, so the bound only delays the
	// warning and, should notifications stop, how long streams keep their
	// slow poll.
	probeWait = 5 * time.Second
	// probeMark marks a probe's payload, between the token and the
	// number.
	probeMark = ":probe:"
	// listenRetry is the listener's first pause before it connects again,
	// doubled at each failure up to listenRetryMax.
	listenRetry    = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// newToken names a Store in its notifications.
func newToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// notifyPayload returns the payload of the notification of a batch of
// saves: the Store's token and the distinct tenants of their events, or
// "" when none of them writes events. A save that turns out to write
// nothing (a version conflict) is named all the same: its statement's
// result is not known when the notification is queued, and such a save
// is rare (another replica took its transfer); its tenant's streams read
// the outbox once for nothing.
func (s *Store) notifyPayload(saves []*saveReq) string {
	var tenants []string
	for _, r := range saves {
		for _, t := range r.events.tenants {
			if !slices.Contains(tenants, t) {
				tenants = append(tenants, t)
			}
		}
	}
	return s.payloadOf(tenants)
}

// payloadOf returns the payload of a notification of events of the
// distinct tenants, or "" for none.
func (s *Store) payloadOf(tenants []string) string {
	if len(tenants) == 0 {
		return ""
	}
	n := len(s.token)
	for _, t := range tenants {
		n += 1 + len(t)
		if t == "" || t == anyTenant || strings.ContainsAny(t, " \x00") {
			n = maxPayload + 1 // not sent as is: every tenant is woken
		}
	}
	if n > maxPayload {
		return s.token + " " + anyTenant
	}
	return s.token + " " + strings.Join(tenants, " ")
}

// ListenEvents has saved called with the tenant of the events of each
// batch of saves another replica (another Store on this database and
// schema) commits, once it has committed; and with "" when any tenant's
// events may have been saved unheard: each time listening starts (also
// again, after the connection was lost or notifications were not
// delivered: what was sent meanwhile was not heard), and for a batch
// with too many tenants to name. failed is called with the error each
// time listening stops or cannot start; it is tried again, after 100 ms,
// then up to 5 s apart, until Close (after which ListenEvents does
// nothing). Saves never wait for the listener. Neither function may
// block: they are called from the listener's goroutine, which receives
// nothing while they run.
//
// The listener holds a connection of its own, outside the pool. Behind a
// connection pooler in transaction mode (PgBouncer) notifications are not
// delivered: the listener finds that its probe is not heard, calls
// failed once with an error that wraps errNotDelivered, keeps its
// connection and probes again after each quiet spell, and listens once a
// probe is heard. Meanwhile Listening is false, and streams poll at their
// faster rate.
func (s *Store) ListenEvents(saved func(tenant string), failed func(error)) {
	s.addHandler(eventsHandler{saved: saved, failed: failed})
}

// addHandler adds h to the listener's handlers, starting the listener if
// it is not running (and the store is open).
func (s *Store) addHandler(h eventsHandler) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listenClosed {
		return // the store is closed: nothing will be heard
	}
	s.handlers = append(s.handlers, h)
	if s.listenStop != nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	s.listenStop = stop
	s.listenDone = make(chan struct{})
	go s.listen(ctx)
}

// Listening reports whether the listener receives notifications now:
// false before ListenEvents, until the listener hears its first probe,
// from when its connection is lost or a probe is not heard to when it
// hears a probe again.
func (s *Store) Listening() bool { return s.listening.Load() }

// eventsHandler is one ListenEvents's pair of functions, or one
// ListenCallbacks's or ListenNotesSaved's function.
type eventsHandler struct {
	saved      func(tenant string)
	failed     func(error)
	callback   func(tenant, provider, transferID, note string)
	notesSaved func(id string)
}

// stopListening stops the listener, if any, and waits for it (Close).
func (s *Store) stopListening() {
	s.listenMu.Lock()
	stop, done := s.listenStop, s.listenDone
	s.listenClosed = true
	s.listenMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// handlersNow returns the handlers ListenEvents was given so far.
func (s *Store) handlersNow() []eventsHandler {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	return s.handlers
}

// errNotDelivered is why a listener whose probe is not heard is not
// listening.
var errNotDelivered = errors.New("notifications are not delivered on this connection (a pooler in transaction mode?)")

// listen listens until ctx ends, connecting again with back-off whenever
// the connection is lost or cannot be made.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	wait := listenRetry
	// told: the handlers were told that notifications are not delivered,
	// and no probe was heard since. They are told once, not at each
	// check: behind a pooler nothing changes from one check to the next.
	told := false
	for {
		err := s.listenOn(ctx, &told, func() { wait = listenRetry })
		s.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		s.tellFailed(err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, listenRetryMax)
	}
}

// tellFailed tells the handlers that the listener failed with err.
func (s *Store) tellFailed(err error) {
	err = s.fail("listen for saved events", err)
	for _, h := range s.handlersNow() {
		if h.failed != nil {
			h.failed(err)
		}
	}
}

// listenOn connects, listens, probes, and hands each notification to the
// handlers until the connection fails or ctx ends; it calls up each time
// it hears a probe after none was heard. Notifications that are not
// delivered do not end it: another connection would not hear them
// either, and connecting again every few seconds would only repeat the
// warning.
func (s *Store) listenOn(ctx context.Context, told *bool, up func()) error {
	cctx, cancel := context.WithTimeout(ctx, listenCheck)
	conn, err := pgx.ConnectConfig(cctx, s.pool.Config().ConnConfig)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	cctx, cancel = context.WithTimeout(ctx, listenCheck)
	_, err = conn.Exec(cctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize())
	cancel()
	if err != nil {
		return err
	}
	s.listenPID.Store(conn.PgConn().PID())
	// Only probes sent from now on can be heard on this connection.
	first := s.probes.Load() + 1
	if err := s.probe(ctx); err != nil {
		return err
	}
	// due is when the oldest probe not heard yet should have been (zero:
	// none is awaited); check is when the next quiet spell ends.
	now := time.Now()
	due, check := now.Add(time.Duration(s.probeWithin.Load())), now.Add(s.quietCheck)
	for {
		until := check
		if !due.IsZero() && due.Before(until) {
			until = due
		}
		wctx, cancel := context.WithDeadline(ctx, until)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if s.deaf.Load() {
				continue // a test's listener that receives nothing
			}
			check = time.Now().Add(s.quietCheck)
			if k, own := s.ownProbe(n.Payload); own {
				if k < first {
					continue
				}
				due = time.Time{}
				if !s.listening.Swap(true) {
					*told = false
					up()
					// Whatever was committed before LISTEN took effect,
					// or while notifications were not delivered, was not
					// heard.
					s.heard("")
				}
				continue
			}
			if id, ok := s.parseNotesSaved(n.Payload); ok {
				for _, h := range s.handlersNow() {
					if h.notesSaved != nil {
						h.notesSaved(id)
					}
				}
				continue
			}
			if c, ok := s.parseCallback(n.Payload); ok {
				for _, h := range s.handlersNow() {
					if h.callback != nil {
						h.callback(c.tenant, c.provider, c.transferID, c.note)
					}
				}
				continue
			}
			if tenants, ok := s.parsePayload(n.Payload); ok {
				for _, t := range tenants {
					s.heard(t)
				}
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			now := time.Now()
			if !due.IsZero() && !now.Before(due) {
				// The probe was sent and committed, and not heard:
				// nothing sent on the channel reaches this connection.
				due = time.Time{}
				s.listening.Store(false)
				if !*told {
					*told = true
					s.tellFailed(errNotDelivered)
				}
			}
			if now.Before(check) {
				continue
			}
			// A quiet spell: does the connection still answer, and does
			// it still hear what is sent?
			pctx, cancel := context.WithTimeout(ctx, listenCheck)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				err = s.probe(ctx)
			}
			if err == nil {
				now = time.Now()
				if due.IsZero() {
					due = now.Add(time.Duration(s.probeWithin.Load()))
				}
				check = now.Add(s.quietCheck)
				continue
			}
		}
		return err
	}
}

// probe sends a notification of the listener's own on its channel, in a
// transaction of the pool's as saves send theirs: the path whose
// notifications the listener must hear.
func (s *Store) probe(ctx context.Context) error {
	payload := s.token + probeMark + strconv.FormatUint(s.probes.Add(1), 10)
	ctx, cancel := context.WithTimeout(ctx, listenCheck)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, payload); err != nil {
		return fmt.Errorf("send a probe: %w", err)
	}
	return nil
}

// ownProbe returns the number of a probe this Store sent; own is false
// for any other notification.
func (s *Store) ownProbe(p string) (n uint64, own bool) {
	rest, own := strings.CutPrefix(p, s.token+probeMark)
	if !own {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// heard tells the handlers that tenant's events were saved ("": any
// tenant's).
func (s *Store) heard(tenant string) {
	for _, h := range s.handlersNow() {
		if h.saved != nil {
			h.saved(tenant)
		}
	}
}

// parsePayload returns the tenants a notification names ("" for every
// tenant); ok is false for this Store's own, or one it cannot read.
func (s *Store) parsePayload(p string) (tenants []string, ok bool) {
	fields := strings.Fields(p)
	if len(fields) < 2 || fields[0] == s.token {
		return nil, false
	}
	tenants = fields[1:]
	if slices.Contains(tenants, anyTenant) {
		return []string{""}, true
	}
	return tenants, true
}
