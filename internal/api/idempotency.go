package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// IdempotencyStore keeps Idempotency-Key records; the orchestrator's
// stores implement it, so that keys hold across restarts and replicas.
type IdempotencyStore interface {
	ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error)
	CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error
	DeleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time) error
}

// idempotencyWait bounds how long a duplicate waits for the first request
// with its key to finish before it is told to retry.
const idempotencyWait = 65 * time.Second // longer than the longest Prefer: wait

// repeatWait is idempotencyWait; a variable so that tests can shorten it.
var repeatWait = idempotencyWait

// recordTimeout bounds the recording of a response (or the release of a
// reservation after a 5xx), so that it ends within
// orchestrator.ReservationTimeout.
const recordTimeout = 10 * time.Second

// MaxWriteTimeout is the longest server write timeout (Config.WriteTimeout)
// that keeps a request with an Idempotency-Key within
// orchestrator.ReservationTimeout.
const MaxWriteTimeout = 2 * time.Minute

// startBudget is what orchestrator.ReservationTimeout leaves a request for
// the rest of its work: validating the request and saving the transfer
// (a few store calls). The create enforces it (startTimeout).
const startBudget = 45 * time.Second

// startTimeout bounds a create's start (startBudget); a variable so that
// tests can shorten it.
var startTimeout = startBudget

// A request with an Idempotency-Key reserves its key (CreatedAt is taken
// before it waits for an earlier request with the key, so that a
// duplicate's wait, however it ends, is part of the sum), is served (the
// create, then at most the longest Prefer: wait and a write within the
// write timeout) and records its response, all within
// orchestrator.ReservationTimeout: past it its replica settles the
// reservation, which must then belong to no request being served. This
// line does not compile if the sum exceeds the bound.
const _ = uint64(orchestrator.ReservationTimeout - (idempotencyWait + startBudget + maxPreferWait + MaxWriteTimeout + recordTimeout))

// idempotent makes a POST with an Idempotency-Key answer every repeat
// with the first response: the same key and body replay it (across
// restarts and replicas), the same key with another body is a 422, and a
// repeat that arrives while the first is still being served waits for it
// (its write deadline moved by the wait, as a long poll's is), or is told
// to retry. Only the answer of a request that was carried out is
// remembered (see remembered); a refusal releases the key, so that a
// retry with it is judged afresh. A reservation whose response could not
// be recorded (the store failed) is settled by this replica once
// orchestrator.ReservationTimeout has passed. writeTimeout is the
// server's write timeout (Config.WriteTimeout).
//
// A repeat that waits holds one of its tenant's wait slots (max_waits), as
// a long poll does: each holds a connection for up to idempotencyWait.
// Once stop is closed (the replica's shutdown began) a repeat waits no
// more and is told to retry: the request it repeats may be served
// elsewhere, or here until the servers close, and a wait of up to
// idempotencyWait held the servers' shutdown for its whole timeout, and
// was then cut without an answer.
func idempotent(store IdempotencyStore, replica string, eng *orchestrator.Engine, lim *limiter, writeTimeout time.Duration, stop <-chan struct{}, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := r.Header.Values("Idempotency-Key")
		if len(keys) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		// A header sent empty is a key gone missing in the client, not a
		// request without one: served unkeyed, its retry would act twice.
		key := keys[0]
		if !validKey(key) {
			writeProblem(w, r, fieldProblem(probValidation, map[string]string{
				"Idempotency-Key": "must be 1 to 255 visible ASCII characters"}))
			return
		}
		if len(keys) > 1 {
			// Which of two keys names the action? A proxy or a retry
			// that kept the other would act twice, or replay another
			// request's answer.
			writeProblem(w, r, fieldProblem(probValidation, map[string]string{
				"Idempotency-Key": "is given more than once; send one key"}))
			return
		}
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		// The query string is part of the request: the same body sent
		// with ?dry_run=true is another request (a POST refuses any query,
		// 400), not a repeat to be given the first's answer. A request
		// without one hashes its body alone, as before the query counted.
		hashed := body
		if r.URL.RawQuery != "" {
			hashed = append(slices.Clip(body), "\x00?"+r.URL.RawQuery...)
		}
		sum := sha256.Sum256(hashed)
		// The tenant is part of the scope: one tenant's key never replays
		// another's response, nor collides with it.
		// CreatedAt names this reservation in the request's later writes
		// (see orchestrator.ReservationTimeout): whole in microseconds, as
		// every store keeps it, and on the engine's clock, by which it
		// settles reservations left behind.
		rec := orchestrator.IdempotencyRecord{Scope: orchestrator.TenantOf(r.Context()) + " " + r.Method + " " + r.URL.Path, Key: key,
			RequestHash: hex.EncodeToString(sum[:]), CreatedAt: eng.Now().UTC().Truncate(time.Microsecond), Owner: replica}

		ctx, cancel := context.WithTimeout(r.Context(), repeatWait)
		defer cancel()
		// The wait slot a waiting repeat holds; given back when its wait
		// ends (release is safe to call again).
		release := func() {}
		defer func() { release() }()
		wait := 20 * time.Millisecond
		for waiting := false; ; waiting = true {
			cur, mine, err := store.ReserveIdempotency(ctx, rec)
			if err != nil {
				if waiting && ctx.Err() != nil {
					// A repeat's wait ran out during a look: answered
					// as when it runs out between two.
					inProgress(w, r)
					return
				}
				if orchestrator.KindOf(err) != orchestrator.KindInternal {
					writeError(w, r, err)
					return
				}
				// The request was not served: whatever the store did
				// with the reservation, nothing else was done. A
				// reservation saved after all is settled in
				// orchestrator.ReservationTimeout; a retry meanwhile is
				// told it is in progress.
				hlog.FromRequest(r).Error().Err(err).Msg("reserving the Idempotency-Key failed")
				p := probUnavailable
				p.Detail = "the store could not record the Idempotency-Key, so the request was not served and nothing was done: retry with the same key"
				writeProblem(w, r, p)
				return
			}
			if waiting && !mayStillWrite(r.Context()) {
				// Revoked while this repeat waited, or left to read
				// only: it neither replays the request it repeats nor,
				// that request's key freed (a refusal or a 5xx is not
				// remembered), serves itself.
				if mine {
					sctx, scancel := context.WithTimeout(context.WithoutCancel(r.Context()), recordTimeout)
					if err := store.DeleteIdempotency(sctx, rec.Scope, rec.Key, rec.CreatedAt); err != nil {
						hlog.FromRequest(r).Warn().Err(err).Msg("could not free the Idempotency-Key of a repeat whose API key was revoked; it expires")
					}
					scancel()
				}
				if !stillAuthorized(r.Context()) {
					writeUnauthorized(w, r, "the API key is not known")
				} else {
					writeReadOnly(w, r)
				}
				return
			}
			if mine {
				break
			}
			if cur.RequestHash != rec.RequestHash {
				p := probKeyReused
				p.Detail = "this Idempotency-Key was used with a different request body or query string; use a new key for a new request"
				writeProblem(w, r, p)
				return
			}
			if cur.Response != nil {
				replay(w, r, eng, *cur.Response)
				return
			}
			if !waiting {
				rel, werr := lim.wait(r.Context())
				if werr != nil {
					writeLimited(w, r, werr)
					return
				}
				release = rel
				// The answer, a replay or a 409, is written after the
				// wait: the server's write timeout counts from the
				// request, so the wait goes on top of it.
				extendWrite(w, r, idempotencyWait, writeTimeout)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				inProgress(w, r)
				return
			case <-stop:
				t.Stop()
				p := probKeyInProgress
				p.Detail = "a request with this Idempotency-Key is still being served, and this replica is shutting down: retry with the same key"
				w.Header().Set("Retry-After", "1")
				writeProblem(w, r, p)
				return
			case <-t.C:
			}
			wait = min(wait*2, time.Second)
		}
		// Served now: what the request itself waits for is its handler's
		// to count.
		release()

		cw := &captureWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), idempotencyCtxKey{}, rec)))
		// The response is recorded even if the client went away: a retry
		// must see the transfer this request created.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(r.Context()), recordTimeout)
		defer scancel()
		var err error
		if !remembered(cw.status) {
			err = store.DeleteIdempotency(sctx, rec.Scope, rec.Key, rec.CreatedAt)
		} else {
			err = store.CompleteIdempotency(sctx, rec.Scope, rec.Key, rec.CreatedAt, orchestrator.IdempotentResponse{
				Status: cw.status, Location: w.Header().Get("Location"), Body: cw.body.Bytes()})
		}
		if err != nil {
			hlog.FromRequest(r).Error().Err(err).Dur("settled_within_ms", orchestrator.ReservationTimeout).
				Msg("recording an idempotent response failed; the key answers 409 until its reservation is settled")
		}
	})
}

// inProgress tells a repeat whose wait for the request with its key ran
// out to retry.
func inProgress(w http.ResponseWriter, r *http.Request) {
	p := probKeyInProgress
	p.Detail = "a request with this Idempotency-Key is still being served; retry later"
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, p)
}

// remembered reports whether an answer is recorded under its key: only a
// 2xx, the answer of a request that was carried out (Stripe's rule: a
// result is saved only if the endpoint started executing). A refusal did
// nothing, and remembering it would let a client store a durable record
// per fresh key for the retention period (an invalid create, a cancel of
// an unknown id) and keep a key refused after its cause is gone (a 403 by
// a replica whose tenants file lagged, a 409 or 429 that invites a retry;
// a replay keeps no headers, not even Retry-After). A 5xx is not
// remembered either: a create the store saved all the same is answered
// through its link to the reservation (DeleteIdempotency), not by this.
//
// This holds only while no handler behind idempotent answers a 4xx once
// it has done something: the create answers 2xx once Engine.Start saved
// its transfer, and /complete and /cancel once the signal is stored; every
// 4xx of theirs comes before (validation, allow-lists, limits, an unknown
// transfer, a state or a store that refused the change).
func remembered(status int) bool {
	return status >= 200 && status < 300
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// idempotencyCtxKey carries the reservation a request holds to its
// handler.
type idempotencyCtxKey struct{}

// idempotencyOf returns the reservation the request holds (its Scope, Key
// and CreatedAt), or a zero record when it has no Idempotency-Key.
func idempotencyOf(ctx context.Context) orchestrator.IdempotencyRecord {
	v, _ := ctx.Value(idempotencyCtxKey{}).(orchestrator.IdempotencyRecord)
	return v
}

// replay answers with a recorded response. A response recorded without a
// body but with a TransferID (a reservation settled after the process
// that served it died) is the transfer as it is now, with the recorded
// status and Location.
func replay(w http.ResponseWriter, r *http.Request, eng *orchestrator.Engine, resp orchestrator.IdempotentResponse) {
	body := resp.Body
	if len(body) == 0 && resp.TransferID != "" {
		t, err := eng.Get(r.Context(), resp.TransferID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(toJSON(t)); err != nil {
			writeError(w, r, err)
			return
		}
		body = buf.Bytes()
	}
	h := w.Header()
	if resp.Location != "" {
		h.Set("Location", resp.Location)
	}
	switch {
	case resp.Status >= 400:
		h.Set("Content-Type", "application/problem+json")
		h.Set("Cache-Control", "no-store")
	case len(body) > 0:
		h.Set("Content-Type", "application/json")
	}
	// The record keeps no headers, and a replay applies no preference: it
	// waits for nothing, whatever the repeat's Prefer says. Its status
	// tells how the first request's wait ended (a 202 said the transfer
	// had not settled or ended within it); a Preference-Applied taken
	// from the repeat would claim a wait this answer never made.
	h.Set("Idempotent-Replayed", "true")
	w.WriteHeader(resp.Status)
	_, _ = w.Write(body)
}

// captureWriter passes a response through and keeps a copy.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (c *captureWriter) WriteHeader(status int) {
	if !c.wrote {
		c.status, c.wrote = status, true
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.wrote = true
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
