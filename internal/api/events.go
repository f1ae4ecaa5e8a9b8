package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/wake"
)

// eventJSON is an event as webhooks, the stream and the history carry it:
// the transfer resource as GET /v1/transfers/{id} returned it when the
// event was saved, with the event's type, time and per-transfer sequence.
type eventJSON struct {
	ID         string                 `json:"id"` // the webhook-id of its deliveries
	Type       orchestrator.EventType `json:"type"`
	Timestamp  time.Time              `json:"timestamp"`
	TransferID string                 `json:"transfer_id"`
	Seq        int64                  `json:"seq"`
	From       orchestrator.State     `json:"from,omitempty"`
	To         orchestrator.State     `json:"to,omitempty"`
	Data       *transferJSON          `json:"data,omitempty"`
}

func toEventJSON(ev orchestrator.Event) eventJSON {
	j := eventJSON{ID: ev.ID, Type: ev.Type, Timestamp: ev.At, TransferID: ev.TransferID, Seq: ev.Seq, From: ev.From, To: ev.To}
	if ev.Transfer != nil {
		d := toJSON(ev.Transfer)
		j.Data = &d
	}
	return j
}

// EventPayload renders an event as the body of its webhook deliveries;
// cmd/transferd hands it to the webhook dispatcher.
func EventPayload(ev orchestrator.Event) ([]byte, error) {
	return json.Marshal(toEventJSON(ev))
}

// eventsPage bounds one read of the outbox by the stream and the history.
const eventsPage = 200

// handleTransferEvents serves GET /v1/transfers/{id}/events: the
// transfer's events, oldest first.
func handleTransferEvents(eng *orchestrator.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !noQuery(w, r) {
			return
		}
		id := chi.URLParam(r, "id")
		// Not found for another tenant's transfer, as GET /v1/transfers/{id}.
		if _, err := eng.Get(r.Context(), id); err != nil {
			writeReadError(w, r, err)
			return
		}
		items := []eventJSON{}
		var after int64
		for {
			evs, err := eng.Events(r.Context(), orchestrator.EventFilter{TransferID: id, After: after, Limit: eventsPage})
			if err != nil {
				writeReadError(w, r, err)
				return
			}
			for _, ev := range evs {
				items = append(items, toEventJSON(ev))
			}
			if len(evs) < eventsPage {
				break
			}
			after = evs[len(evs)-1].Pos
		}
		encode(w, http.StatusOK, map[string]any{"items": items})
	})
}

// DefaultEventStreamPoll is how often an event stream reads the outbox,
// once it has sent everything, when no save wakes it sooner
// (Config.EventStreamPoll).
const DefaultEventStreamPoll = 200 * time.Millisecond

// DefaultEventStreamSafetyPoll is a stream's poll while every replica's
// saves wake it (Config.EventsHeard): the same second as on a store no
// other process writes.
const DefaultEventStreamSafetyPoll = time.Second

// streamPoll returns how often a stream that nothing woke reads the
// outbox now.
func (c *Config) streamPoll() time.Duration {
	if c.EventsHeard != nil && c.EventsHeard() {
		return c.EventStreamSafetyPoll
	}
	return c.EventStreamPoll
}

// streamKeepAlive is how long an idle stream stays silent before it sends
// a comment, so that proxies keep the connection (a var for tests).
var streamKeepAlive = 15 * time.Second

// defaultStreamWriteTimeout is how long a stream's write may wait for
// the client when the server has no write timeout (Config.WriteTimeout),
// TRANSFERD_WRITE_TIMEOUT's default.
const defaultStreamWriteTimeout = 30 * time.Second

// streamGap is the least time between two reads of the outbox by a stream
// that a save woke: the saves of a burst (a transfer's steps, many
// transfers at once) are read together, not each by every stream, while
// the first save after a quiet spell is read at once. A save wakes the
// streams of its tenant only; when every save woke every stream of the
// replica, with 100 streams and 20 transfers a second (8 events each),
// reading at each wake cost a fifth of a core more than polling every
// 200 ms did, and 100 ms cost what polling did.
//
// The gap counts from the last read a save woke or that sent events: a
// poll's read that found nothing is no part of a burst. Counted from any
// read, a stream's poll delayed the next save's wake by up to the gap
// once in every poll/gap reads: half of the events another replica
// saved, when streams polled every 200 ms on PostgreSQL as they were
// woken by its notifications (BenchmarkEventAcrossReplicas: 50 ms on
// average, where the wake itself takes 2 to 4 ms). A var for tests.
var streamGap = 100 * time.Millisecond

// streamRead, when set (by tests), is called after each read of the
// outbox by a stream, before it waits, with the channel of the wake it
// then waits for.
var streamRead atomic.Pointer[func(woken <-chan struct{})]

// streamEnded, when set (by tests), is called once a stream that held a
// wait slot has given it back.
var streamEnded atomic.Pointer[func()]

// handleEventStream serves GET /v1/events: the tenant's events as
// Server-Sent Events, each with an id naming its outbox position (sealed:
// eventIDs), so that a client reconnecting with Last-Event-ID resumes
// after the last one it saw (?after= serves clients that cannot set the
// header; the header wins when both are sent). Without either the stream
// starts with events saved from now on.
//
// A stream reads the outbox when saved wakes it (each save that wrote its
// tenant's events, of this replica or, where the store tells of them,
// of another) and every poll, for what no wake told it. Once closing is
// closed (the process is shutting down) it reads once more, for what the
// engine's shutdown saved, and ends; the client resumes with
// Last-Event-ID.
//
// Each write has writeTimeout (the server's write timeout; a default when
// it has none) to reach the client, from when it is made: a client that
// stops reading is cut once the socket's buffers are full, freeing its
// wait slot, while one that reads slowly, or a stream idle between
// keep-alives, never meets a deadline set for an earlier write.
func handleEventStream(eng *orchestrator.Engine, lim *limiter, saved *wake.Tenants, poll func() time.Duration, writeTimeout time.Duration, closing <-chan struct{}) http.Handler {
	if writeTimeout <= 0 {
		writeTimeout = defaultStreamWriteTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := map[string]string{}
		q := query(r, bad)
		f := orchestrator.EventFilter{TransferID: q.Get("transfer_id"), Limit: eventsPage}
		if f.TransferID != "" && !orchestrator.ValidID(f.TransferID) {
			bad["transfer_id"] = "is not a transfer id"
		}
		// The Go client of earlier releases sent both parameters on every
		// stream, those its caller left unset empty: read as before.
		earlier := sendsEvery(q, "transfer_id", "after")
		for name, vs := range q {
			switch {
			case name != "transfer_id" && name != "after":
				bad[name] = "is not a known query parameter"
			case len(vs) > 1:
				bad[name] = "is given more than once"
			case name == "transfer_id" && vs[0] == "" && !earlier:
				// Read as left out, a hand-written ?transfer_id=$ID with $ID
				// unset streamed every transfer's events to a client that
				// asked for one's. (An empty after is a position not known
				// yet, as an EventSource's first URL may carry: from now.)
				bad[name] = "is empty: leave the parameter out to stream every transfer's events"
			}
		}
		key, err := eng.EventIDKey(r.Context())
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		ids := newEventIDs(key, orchestrator.TenantOf(r.Context()))
		// Both are checked; Last-Event-ID, read second, wins: an
		// EventSource opened with ?after= keeps it in the URL of every
		// reconnection and adds the id of the last event it saw, the newer.
		fromNow := true
		if len(r.Header.Values("Last-Event-ID")) > 1 {
			// Which one is the client's position? An EventSource sends
			// one; a stream resumed from the other would skip events or
			// send them again.
			bad["Last-Event-ID"] = "is given more than once"
		}
		for _, resume := range [][2]string{{"after", q.Get("after")}, {"Last-Event-ID", r.Header.Get("Last-Event-ID")}} {
			if resume[1] == "" {
				continue
			}
			if _, said := bad[resume[0]]; said {
				continue // given twice
			}
			n, ok := ids.pos(resume[1])
			if !ok {
				bad[resume[0]] = "must be 0 or the id of an event this stream sent"
				continue
			}
			f.After, fromNow = n, false
		}
		if len(bad) > 0 {
			writeProblem(w, r, fieldProblem(probValidation, bad))
			return
		}
		if f.TransferID != "" {
			if _, err := eng.Get(r.Context(), f.TransferID); err != nil {
				writeReadError(w, r, err)
				return
			}
		}
		// An open stream holds one of the tenant's wait slots until the
		// client leaves, as a long poll does while it waits.
		release, err := lim.wait(r.Context())
		if err != nil {
			writeLimited(w, r, err)
			return
		}
		defer func() {
			release()
			if hook := streamEnded.Load(); hook != nil {
				(*hook)()
			}
		}()
		if fromNow {
			// Start at the end of the outbox: the client asked for what
			// happens next. One index lookup, however long the history.
			if f.After, err = eng.LastEventPos(r.Context(), f.TransferID); err != nil {
				writeReadError(w, r, err)
				return
			}
		}
		// Listening from before the answer's headers: a client that has
		// them is counted among the listeners.
		saves := saved.Listen(orchestrator.TenantOf(r.Context()))
		defer saves.Close()
		// A stream outlives the server's write and read timeouts by design.
		// The read deadline matters too: once the request is read, the
		// server keeps a read pending to notice the client leaving, and
		// that read timing out would cancel the stream's context. The
		// write deadline is set again before every write (writing): with
		// none, a client that stopped reading held its connection, and
		// its tenant's wait slot, until it went, the write waiting for good
		// once the socket's buffers were full.
		rc := http.NewResponseController(w)
		writing := func() { _ = rc.SetWriteDeadline(time.Now().Add(writeTimeout)) }
		writing()
		_ = rc.SetReadDeadline(time.Time{})
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		// retry: tells EventSource how long to wait before reconnecting.
		fmt.Fprintf(w, "retry: 2000\n\n")
		if rc.Flush() != nil {
			return
		}
		timer := time.NewTimer(poll())
		defer timer.Stop()
		idle := time.Now()
		// busy is when the stream last read because a save woke it, or
		// read events: the gap between reads counts from it. woke: the
		// coming read is a wake's.
		var busy time.Time
		woke, ending := false, false
		for {
			// Taken before the read: a save between the read and the wait
			// below has closed it, and is read at once, not at the poll.
			woken := saves.Next()
			read := time.Now()
			evs, err := eng.Events(r.Context(), f)
			if err != nil {
				if r.Context().Err() == nil {
					hlog.FromRequest(r).Error().Err(err).Msg("event stream: read events")
				}
				return
			}
			if hook := streamRead.Load(); hook != nil {
				(*hook)(woken)
			}
			if woke || len(evs) > 0 {
				busy = read
			}
			woke = false
			if len(evs) > 0 && !stillAuthorized(r.Context()) {
				hlog.FromRequest(r).Info().Msg("event stream closed: its API key no longer authenticates")
				return
			}
			for _, ev := range evs {
				data, _ := json.Marshal(toEventJSON(ev))
				// Per event, not per batch: a page of events may take a
				// slow client longer than writeTimeout to read whole.
				writing()
				fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", ids.id(ev.Pos), ev.Type, data)
				f.After = ev.Pos
			}
			if len(evs) > 0 {
				idle = time.Now()
				writing()
				if rc.Flush() != nil {
					return
				}
			}
			if len(evs) == eventsPage {
				continue
			}
			if ending {
				return
			}
			if time.Since(idle) >= streamKeepAlive {
				if !stillAuthorized(r.Context()) {
					hlog.FromRequest(r).Info().Msg("event stream closed: its API key no longer authenticates")
					return
				}
				writing()
				fmt.Fprintf(w, ": keep-alive\n\n")
				if rc.Flush() != nil {
					return
				}
				idle = time.Now()
			}
			// Until a save wakes it, the poll, or the keep-alive's time,
			// whichever comes first. The poll is asked each time: it is
			// slower while other replicas' saves wake the stream too.
			timer.Reset(min(poll(), streamKeepAlive-time.Since(idle)))
			select {
			case <-r.Context().Done():
				return
			case <-closing:
				// A stream never ends by itself: left open, it would hold
				// the server's Shutdown, and the process, for the whole
				// shutdown timeout.
				ending = true
			case <-timer.C:
			case <-woken:
				woke = true
				if gap := streamGap - time.Since(busy); gap > 0 {
					timer.Reset(gap)
					select {
					case <-r.Context().Done():
						return
					case <-timer.C:
					}
				}
			}
		}
	})
}
