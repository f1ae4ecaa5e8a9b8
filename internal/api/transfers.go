package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// createRequest is the body of POST /v1/transfers.
type createRequest struct {
	Provider       string                  `json:"provider"`
	Mode           string                  `json:"mode"`
	Call           *orchestrator.CallRef   `json:"call"`
	Target         string                  `json:"target"`
	Completion     string                  `json:"completion"`
	ConsultTimeout string                  `json:"consult_timeout"`
	CallerID       string                  `json:"caller_id"`
	Whisper        *orchestrator.Whisper   `json:"whisper"`
	Diversion      *orchestrator.Diversion `json:"diversion"`
	Recording      *orchestrator.Recording `json:"recording"`
	ExternalID     string                  `json:"external_id"`
	Metadata       map[string]string       `json:"metadata"`

	timeout time.Duration
}

// Valid checks what the JSON alone can tell; the engine checks the rest
// (providers, capabilities, provider-specific fields).
func (c *createRequest) Valid(context.Context) map[string]string {
	bad := map[string]string{}
	if c.Call == nil {
		bad["call"] = "is required: the call to transfer"
	}
	if c.ConsultTimeout != "" {
		// Digits and a unit only: "0", "+30s" or "-1m" are mistakes, not
		// a request for the default.
		d, err := time.ParseDuration(c.ConsultTimeout)
		if err != nil || !durationRE.MatchString(c.ConsultTimeout) || d < time.Second {
			bad["consult_timeout"] = `must be a duration of at least 1s written as digits and a unit, such as "30s" or "2m"`
		} else {
			c.timeout = d
		}
	}
	for f, d := range validContext(c.ExternalID, c.Metadata) {
		bad[f] = d
	}
	return bad
}

// nonEmpty: the fields openapi.yaml gives no empty value (minLength 1,
// an enum or a pattern) that would otherwise read "" as left out: the
// default mode, completion or consult timeout, no caller id, a call
// named without its call_id. provider and target are required, and say
// so themselves.
func (c *createRequest) nonEmpty() []string {
	return []string{"mode", "completion", "consult_timeout", "caller_id",
		"call.domain", "call.user", "call.call_id", "call.agent_call_id",
		"whisper.gender", "diversion.treatment", "diversion.reason", "recording.file_format"}
}

// durationRE is openapi.yaml's Duration: decimal numbers, each with a unit.
var durationRE = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`)

func (c *createRequest) request() orchestrator.Request {
	r := orchestrator.Request{
		Provider: strings.ToLower(strings.TrimSpace(c.Provider)), Mode: orchestrator.Mode(c.Mode),
		Target: strings.TrimSpace(c.Target), Completion: orchestrator.Completion(c.Completion),
		ConsultTimeout: c.timeout, CallerID: c.CallerID,
		Whisper: c.Whisper, Diversion: c.Diversion, Recording: c.Recording,
		ExternalID: c.ExternalID, Metadata: c.Metadata,
	}
	if c.Call != nil {
		r.Call = *c.Call
	}
	return r
}

// transferJSON is the resource representation.
type transferJSON struct {
	ID              string                  `json:"id"`
	Provider        string                  `json:"provider"`
	Mode            orchestrator.Mode       `json:"mode"`
	State           orchestrator.State      `json:"state"`
	Call            orchestrator.CallRef    `json:"call"`
	Target          string                  `json:"target"`
	Completion      orchestrator.Completion `json:"completion"`
	ConsultTimeout  string                  `json:"consult_timeout"`
	ConsultDeadline *time.Time              `json:"consult_deadline,omitempty"`
	TargetAnswered  bool                    `json:"target_answered"`
	CallerID        string                  `json:"caller_id,omitempty"`
	Whisper         *orchestrator.Whisper   `json:"whisper,omitempty"`
	Diversion       *orchestrator.Diversion `json:"diversion,omitempty"`
	Recording       *orchestrator.Recording `json:"recording,omitempty"`
	ExternalID      string                  `json:"external_id,omitempty"`
	Metadata        map[string]string       `json:"metadata,omitempty"`
	Legs            orchestrator.Legs       `json:"legs"`
	Steps           []orchestrator.Step     `json:"steps"`
	Outcome         *outcomeJSON            `json:"outcome,omitempty"`
	CreatedAt       time.Time               `json:"created_at"`
	UpdatedAt       time.Time               `json:"updated_at"`
}

// outcomeJSON is an outcome with whether it is final: no cleanup
// obligation remains, so nothing about it will change. It is derived from
// the record (no obligation), not stored, so that records saved before the
// field existed render it too. Verified false and final true is an
// outcome the provider can no longer show (see orchestrator.Outcome).
type outcomeJSON struct {
	*orchestrator.Outcome
	Final bool `json:"final"`
}

func toJSON(t *orchestrator.Transfer) transferJSON {
	r := t.Request
	j := transferJSON{
		ID: t.ID, Provider: r.Provider, Mode: r.Mode, State: t.State, Call: r.Call, Target: r.Target,
		Completion: r.Completion, ConsultTimeout: r.ConsultTimeout.String(), TargetAnswered: t.Answered,
		CallerID: r.CallerID, Whisper: r.Whisper, Diversion: r.Diversion, Recording: r.Recording,
		ExternalID: r.ExternalID, Metadata: r.Metadata,
		Legs: t.Legs, Steps: t.Steps, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	if t.Outcome != nil {
		j.Outcome = &outcomeJSON{Outcome: t.Outcome, Final: t.Cleanup == nil}
	}
	if j.Steps == nil {
		j.Steps = []orchestrator.Step{}
	}
	if !t.ConsultDeadline.IsZero() && !t.State.Terminal() {
		d := t.ConsultDeadline
		j.ConsultDeadline = &d
	}
	return j
}

// waitSlot takes one of the tenant's wait slots for a wait of d, and none
// for a wait of zero (Prefer: wait=0), which waits for nothing. Past the
// tenant's bound it answers 429 itself and reports false. release may be
// called before the deferred call: it gives the slot back once.
func waitSlot(w http.ResponseWriter, r *http.Request, lim *limiter, d time.Duration) (release func(), ok bool) {
	if d <= 0 {
		return func() {}, true
	}
	release, err := lim.wait(r.Context())
	if err != nil {
		writeLimited(w, r, err)
		return nil, false
	}
	return release, true
}

// maxPreferWait caps Prefer: wait, so that a request cannot hold a
// connection longer than proxies typically allow.
const maxPreferWait = 60 * time.Second

// preferWait reads RFC 7240's wait preference ("Prefer: wait=N", N
// seconds), capped at maxPreferWait. A Prefer header is a comma-separated
// list of preferences, each a name, maybe "=" and a value (a token or a
// quoted string), then parameters after ";", which mean nothing to wait
// and are ignored; preferences may come in several headers. Only the first
// wait counts (RFC 7240 section 2), and one whose value is not a whole
// number of seconds is ignored. N is capped before it becomes a duration:
// a larger N, even one past any integer, is the cap, never an overflow.
func preferWait(r *http.Request) (time.Duration, bool) {
	const most = int(maxPreferWait / time.Second)
	for _, h := range r.Header.Values("Prefer") {
		for _, pref := range splitUnquoted(h, ',') {
			head := splitUnquoted(pref, ';')[0]
			name, val, _ := strings.Cut(head, "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.TrimSpace(val)
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if val == "" || strings.Trim(val, "0123456789") != "" {
				return 0, false // not delta-seconds: no sign, no fraction
			}
			n, err := strconv.Atoi(val)
			if err != nil {
				n = most // digits only: past any integer
			}
			return time.Duration(min(n, most)) * time.Second, true
		}
	}
	return 0, false
}

// splitUnquoted splits s at every sep outside an HTTP quoted string (where
// a backslash escapes the next byte).
func splitUnquoted(s string, sep byte) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// settled is the condition Prefer: wait waits for on creation: terminal,
// or consulting (where a manual transfer waits for the client).
func settled(t *orchestrator.Transfer) bool {
	return t.State.Terminal() || t.State == orchestrator.StateConsulting && (t.Request.Completion == orchestrator.CompletionManual)
}

// awaitsClient: a manual transfer whose target answered waits for the
// client's complete or cancel, so a long poll has nothing to wait for.
func awaitsClient(t *orchestrator.Transfer) bool {
	return t.State == orchestrator.StateConsulting && t.Request.Completion == orchestrator.CompletionManual && t.Answered
}

func location(id string) string { return "/v1/transfers/" + url.PathEscape(id) }

func handleCreateTransfer(eng *orchestrator.Engine, permit func(context.Context, *orchestrator.Request) error, lim *limiter, writeTimeout time.Duration, ends waitEnds) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := readBody(w, r)
		if !ok {
			return
		}
		var body createRequest
		shape, p := decodeFields(data, &body)
		if p != nil {
			writeProblem(w, r, *p)
			return
		}
		// One problem lists every bad field: unknown and mistyped ones, the
		// body's own checks and the engine's (providers, capabilities,
		// provider-specific fields), and every query parameter. A field's
		// first complaint wins.
		bad := body.Valid(r.Context())
		req := body.request()
		// A provider, domain or target outside the tenant's allow-list is
		// refused before anything else is said about the request.
		if len(shape) == 0 {
			if err := permit(r.Context(), &req); err != nil {
				writeForbidden(w, r, err)
				return
			}
		}
		// Read before the engine's verdict: a 422 or 400 of the engine's
		// alone would hide the ?dry_run=true the retry must drop too. With
		// any other complaint the engine's fields join a 400.
		params := unknownQuery(r, map[string]string{})
		if err := eng.Validate(r.Context(), &req); err != nil {
			if len(bad) == 0 && len(shape) == 0 && len(params) == 0 {
				writeError(w, r, err)
				return
			}
			for f, d := range orchestrator.FieldsOf(err) {
				if _, ok := bad[f]; !ok {
					bad[f] = d
				}
			}
		}
		maps.Copy(bad, shape)
		for f, d := range params {
			// A body field's complaint of the same name is kept.
			if _, ok := bad[f]; !ok {
				bad[f] = d
			}
		}
		if len(bad) > 0 {
			writeProblem(w, r, fieldProblem(probValidation, bad))
			return
		}
		wait, waits := preferWait(r)
		release, ok := waitSlot(w, r, lim, wait)
		if !ok {
			return
		}
		defer release()
		// Once the engine saved the transfer it runs, so the create must
		// complete even if the client went away: its idempotency record
		// then tells a retry which transfer it made. It must also end
		// within startTimeout, which the reservation of its
		// Idempotency-Key counts on (see idempotent): a create whose checks
		// before the save (the in-flight limit's list, the engine's) do not
		// get an answer in time gets a 503, which frees the key, and saves
		// nothing (unless the store's answer to the save itself was lost:
		// see Engine.Start). A save the store has taken is waited for to its verdict
		// (the stores' group commit), which only their own bounds limit:
		// should it land after the reservation was settled, the store saves
		// nothing (the create holds its reservation: ErrReservationLost,
		// a 503), so that a retry's transfer is the key's only one.
		held := idempotencyOf(r.Context())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), startTimeout)
		defer cancel()
		var t *orchestrator.Transfer
		err := lim.start(sctx, eng, func() (err error) {
			t, err = eng.Start(sctx, req, orchestrator.StartOptions{
				IdempotencyScope: held.Scope, IdempotencyKey: held.Key, IdempotencyReservedAt: held.CreatedAt,
				RequestID: w.Header().Get("X-Request-Id"),
			})
			return err
		})
		if err != nil {
			switch {
			case writeLimited(w, r, err):
			case sctx.Err() != nil && (orchestrator.KindOf(err) == orchestrator.KindInternal || errors.Is(err, orchestrator.ErrSaveUnknown)):
				// The deadline passed and the store's answer says nothing
				// more (a definite one, a conflict say, is served as such;
				// a save left unknown says so, and the deadline is why).
				hlog.FromRequest(r).Error().Err(err).Dur("timeout_ms", startTimeout).Msg("the create could not reach the store in time")
				p := probUnavailable
				p.Detail = fmt.Sprintf("the store did not answer within %s: retry, with the same Idempotency-Key if any (should the transfer have been saved after all, transferd drives it and the key answers with it)", startTimeout)
				writeProblem(w, r, p)
			default:
				writeError(w, r, err)
			}
			return
		}
		audit(r, "create", t.ID)
		w.Header().Set("Location", location(t.ID))
		status := http.StatusAccepted
		if waits {
			extendWrite(w, r, wait, writeTimeout)
			began := time.Now()
			ctx, cancel, cut := waitContext(r, wait, ends.of(eng, t.ID))
			latest, werr := eng.Wait(ctx, t.ID, settled)
			cancel()
			// The wait is over: its slot is free before the client hears
			// so, and may be taken again by its next request.
			release()
			if !stillAuthorized(r.Context()) {
				// The key was revoked while the create waited: the
				// transfer it made is answered as it was made, not what
				// the wait brought.
				encode(w, status, toJSON(t))
				return
			}
			if werr == nil {
				t = latest
			}
			w.Header().Set("Preference-Applied", waitApplied(wait, began, cut() && !settled(t)))
			if settled(t) {
				status = http.StatusCreated
			}
		}
		encode(w, status, toJSON(t))
	})
}

func handleGetTransfer(eng *orchestrator.Engine, lim *limiter, writeTimeout time.Duration, ends waitEnds) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !noQuery(w, r) {
			return
		}
		t, err := eng.Get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		wait, waits := preferWait(r)
		if r.Method == http.MethodHead {
			// A HEAD answers at once and applies no wait (RFC 7240 lets
			// a server ignore a preference): its answer has no body and
			// the same headers whether the transfer changed or the wait
			// ran out, so a long poll would tell its client nothing for
			// the wait, and hold a slot of its tenant's long polls.
			waits = false
		}
		if waits && (t.State.Terminal() || awaitsClient(t)) {
			// Nothing to wait for (the transfer ended, or waits for the
			// client's complete or cancel): answered at once, with the
			// wait applied, none, as on every answer to a Prefer: wait.
			w.Header().Set("Preference-Applied", "wait=0")
		} else if waits {
			release, ok := waitSlot(w, r, lim, wait)
			if !ok {
				return
			}
			defer release()
			extendWrite(w, r, wait, writeTimeout)
			// Long-poll: wait for the next change of state, or for the
			// target to answer (which a manual client waits for).
			began := time.Now()
			ctx, cancel, cut := waitContext(r, wait, ends.of(eng, t.ID))
			from, answered := t.State, t.Answered
			if latest, werr := eng.Wait(ctx, t.ID, func(x *orchestrator.Transfer) bool {
				return x.State != from || x.Answered != answered
			}); werr == nil {
				t = latest
			}
			cancel()
			changed := t.State != from || t.Answered != answered
			release() // before the answer, as for a create
			if !stillAuthorized(r.Context()) {
				// Revoked while the poll waited: what it waited for is
				// no longer the key's to read.
				writeUnauthorized(w, r, "the API key is not known")
				return
			}
			w.Header().Set("Preference-Applied", waitApplied(wait, began, cut() && !changed))
		}
		encode(w, http.StatusOK, toJSON(t))
	})
}

// listJSON is a page of transfers.
type listJSON struct {
	Items      []transferJSON `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

func handleListTransfers(eng *orchestrator.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := map[string]string{}
		q := query(r, bad)
		f := orchestrator.ListFilter{Limit: 50, Provider: strings.ToLower(q.Get("provider")), After: q.Get("cursor")}
		for _, v := range q["state"] {
			for _, s := range strings.Split(v, ",") {
				st := orchestrator.State(strings.TrimSpace(s))
				if !st.Valid() {
					bad["state"] = fmt.Sprintf("%q is not a state; one of %v", s, orchestrator.States)
					continue
				}
				f.States = append(f.States, st)
			}
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 200 {
				bad["limit"] = "must be an integer from 1 to 200"
			}
			f.Limit = n
		}
		if f.After != "" && !orchestrator.ValidID(f.After) {
			bad["cursor"] = "is not a cursor returned by this API"
		}
		if p := q.Get("provider"); p != "" {
			// A name no create could have used, a typo say, must not read
			// as "no transfers": refused as the state filter's typos are.
			// Any letter case, as a create takes it.
			names := eng.ProvidersOf(r.Context())
			if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, p) }) {
				bad["provider"] = fmt.Sprintf("%q is not a configured provider; one of %v", p, names)
			}
		}
		filters := []string{"external_id", "domain", "user", "call_id", "target", "created_after", "created_before"}
		earlier := listParams(q, bad, "state", append([]string{"provider", "limit", "cursor"}, filters...)...)
		for _, name := range filters {
			if _, given := q[name]; given && bad[name] == "" {
				listFilter(&f, name, q.Get(name), earlier, bad)
			}
		}
		if len(bad) > 0 {
			writeProblem(w, r, fieldProblem(probValidation, bad))
			return
		}
		ts, more, err := eng.List(r.Context(), f)
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		out := listJSON{Items: make([]transferJSON, 0, len(ts))}
		for _, t := range ts {
			out.Items = append(out.Items, toJSON(t))
		}
		if more && len(ts) > 0 {
			out.NextCursor = ts[len(ts)-1].ID
		}
		encode(w, http.StatusOK, out)
	})
}

// unknownQuery adds to bad each query parameter of a request that takes
// none: transferd never ignores what it does not understand, and a
// ?dry_run=true ignored would start a real transfer, a caller put on hold.
// A body field's complaint of the same name is kept.
func unknownQuery(r *http.Request, bad map[string]string) map[string]string {
	for name := range query(r, bad) {
		if _, ok := bad[name]; !ok {
			bad[name] = "is not a known query parameter (this request takes none)"
		}
	}
	return bad
}

// handleSignal serves /complete and /cancel. With Prefer: wait it waits
// for the transfer to end.
func handleSignal(eng *orchestrator.Engine, action string, act func(context.Context, string) (*orchestrator.Transfer, error), lim *limiter, writeTimeout time.Duration, ends waitEnds) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !noInput(w, r) {
			return
		}
		id := chi.URLParam(r, "id")
		wait, waits := preferWait(r)
		release, ok := waitSlot(w, r, lim, wait)
		if !ok {
			return
		}
		defer release()
		t, err := act(r.Context(), id)
		if err != nil {
			if orchestrator.KindOf(err) == orchestrator.KindConflict && t != nil {
				p := probConflict
				p.Detail, p.TransferID, p.State = conflictDetail(err), t.ID, string(t.State)
				writeProblem(w, r, p)
				return
			}
			writeError(w, r, err)
			return
		}
		audit(r, action, t.ID)
		status := http.StatusAccepted
		if waits {
			extendWrite(w, r, wait, writeTimeout)
			began := time.Now()
			ctx, cancel, cut := waitContext(r, wait, ends.of(eng, t.ID))
			latest, werr := eng.Wait(ctx, t.ID, func(*orchestrator.Transfer) bool { return false })
			cancel()
			release() // before the answer, as for a create
			if !stillAuthorized(r.Context()) {
				// Revoked while the action waited: answered as accepted,
				// not with what the wait brought.
				w.Header().Set("Location", location(t.ID))
				encode(w, status, toJSON(t))
				return
			}
			if werr == nil {
				t = latest
			}
			w.Header().Set("Preference-Applied", waitApplied(wait, began, cut() && !t.State.Terminal()))
			if t.State.Terminal() {
				status = http.StatusOK
			}
		}
		w.Header().Set("Location", location(t.ID))
		encode(w, status, toJSON(t))
	})
}

// noBody is the empty JSON object an action may carry.
type noBody struct{}

// noQuery refuses any query parameter of a request that takes none (a
// GET of one transfer or its events, as the lists refuse the ones they do
// not know). On failure it writes the problem and returns false.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if bad := unknownQuery(r, map[string]string{}); len(bad) > 0 {
		writeProblem(w, r, fieldProblem(probValidation, bad))
		return false
	}
	return true
}

// noInput checks the input of a POST that takes none (the transfer
// actions, a redelivery): no body, though an empty JSON object is
// tolerated, and no query parameter. On failure it writes the problem and
// returns false.
func noInput(w http.ResponseWriter, r *http.Request) bool {
	data, ok := readBody(w, r)
	if !ok || (len(bytes.TrimSpace(data)) > 0 && !decode(w, r, data, &noBody{})) {
		return false
	}
	return noQuery(w, r)
}

// handleCallback passes a provider's event to the tenant's account and
// wakes the transfer it is about. The token in the URL authenticates it:
// an HMAC of the tenant and transfer id under the callback secret. Any
// failure of the token is a 404, as for a transfer that does not exist.
// Providers only need a 2xx; the body is empty. A receiver whose notes the
// record keeps (NoteKeeper) has its callbacks answered 2xx only once the
// record holds what they told, 503 otherwise (noteSaved).
//
// A load balancer sends a callback to any replica. Each forwards what the
// event told to the others: the replica that drives the transfer would
// otherwise never know why its consult ended, only that it did, nor would
// one that takes the transfer over.
func handleCallback(eng *orchestrator.Engine, receiver func(tenant, provider, id string) (CallbackReceiver, bool),
	forward func(r *http.Request, tenant, provider, id, note string), signer *CallbackSigner, m *authMetrics,
	keepTimeout time.Duration, ends waitEnds) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "transfer_id")
		var tenant string
		ok := signer != nil
		if ok {
			tenant, ok = signer.Verify(TokenTransfer, chi.URLParam(r, "token"), id)
		}
		if !ok {
			m.refused.WithLabelValues(refusedCallback).Inc()
			p := probNotFound
			p.Detail = "no callback is expected here"
			writeProblem(w, r, p)
			return
		}
		rcv, ok := receiver(tenant, chi.URLParam(r, "provider"), id)
		if !ok {
			p := probNotFound
			p.Detail = "no configured provider receives callbacks here"
			writeProblem(w, r, p)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		note, err := rcv.ReceiveCallback(r, id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		forward(r, tenant, chi.URLParam(r, "provider"), id, note)
		eng.Notify(id)
		if k, ok := rcv.(NoteKeeper); ok && note != "" && !noteSaved(r, eng, k, tenant, id, note, keepTimeout, ends) {
			// The provider sends a callback that failed again (Catapult:
			// to the fallbackUrl, which names this same route), to this
			// replica or another; meanwhile the note is in the memory of
			// every replica that heard it, as before.
			zerolog.Ctx(r.Context()).Info().Str("transfer_id", id).
				Msg("a callback's note is not saved with its transfer yet: answered 503 for the provider to send it again")
			p := probUnavailable
			p.Detail = "what the callback told is not saved yet: send it again"
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, p)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// keepTimeout is how long a callback's answer waits for its note to be
// saved (Config.CallbackKeepTimeout): half the write timeout at most, so
// that the 503 is still written when the save does not come.
func (cfg Config) keepTimeout() time.Duration {
	keep := cfg.CallbackKeepTimeout
	if keep <= 0 {
		keep = DefaultCallbackKeepTimeout
	}
	if cfg.WriteTimeout > 0 {
		keep = min(keep, cfg.WriteTimeout/2)
	}
	return keep
}

// noteSaved waits, for keepTimeout at most, until the saved record of
// transfer id holds what a callback told (note, which k kept in memory),
// and reports whether it does; also when the transfer is over or gone,
// which keep nothing more. A note lived only in the memory of the
// processes that heard it until the reconcile it wakes saved it, and the
// callback was answered 2xx at once: the driving process stopping before
// that save (a crash, a restart within the moment), or a forward to it
// lost, took the note along, and the provider never sent it again. The
// wait follows the record as saved: this replica's own when it drives
// the transfer, else the store's (Engine.Wait), whichever replica saves
// it: read again as the driver says it saved the transfer's notes (on
// PostgreSQL, Engine.HeardNotesSaved), and polled should that word be
// lost. It ends with the engine's shutdown as a long poll's
// does (waitEnds.of): a transfer driven here is saved by that shutdown,
// another's is not changed by it.
func noteSaved(r *http.Request, eng *orchestrator.Engine, k NoteKeeper, tenant, id, note string,
	keepTimeout time.Duration, ends waitEnds) bool {
	ctx, cancel, _ := waitContext(r.WithContext(orchestrator.WithTenant(r.Context(), tenant)), keepTimeout, ends.of(eng, id))
	defer cancel()
	t, err := eng.Wait(ctx, id, func(t *orchestrator.Transfer) bool { return k.NoteKept(t, note) }) // or terminal
	switch {
	case orchestrator.KindOf(err) == orchestrator.KindNotFound:
		return true // nothing to keep it with
	case err != nil:
		return false
	}
	return t.State.Terminal() || k.NoteKept(t, note)
}

// waitEnds are the two moments a wait a request was granted may end at
// shutdown (Config.Closing, Config.Stopping).
type waitEnds struct{ closing, stopping <-chan struct{} }

// of returns when a wait on transfer id ends at shutdown. One this
// replica drives changes as its engine shuts down (a consult given back),
// which the wait should tell: it ends with the servers. Another replica's
// does not: its wait ends as the shutdown begins. It ended with the
// servers too, which begin only once the engine's shutdown is over: one
// that took the whole TRANSFERD_SHUTDOWN_TIMEOUT (a provider that does
// not answer) left the servers no time, and the wait was cut without an
// answer.
func (w waitEnds) of(eng *orchestrator.Engine, id string) <-chan struct{} {
	if eng.Drives(id) {
		return w.closing
	}
	return w.begun()
}

// begun is when the shutdown begins for the waits that are not for a
// transfer this replica drives (stopping, or closing without it).
func (w waitEnds) begun() <-chan struct{} {
	if w.stopping == nil {
		return w.closing
	}
	return w.stopping
}

// waitContext bounds a wait a request was granted: it ends after wait,
// when the client leaves, or once closing is closed (the server shuts
// down). The request then answers with what it has, as at the end of its
// wait: a long poll that waited on (another replica's transfer, on a
// shared store) held the server's Shutdown for the whole shutdown
// timeout, and was then cut without an answer. cut reports whether
// closing ended the wait.
func waitContext(r *http.Request, wait time.Duration, closing <-chan struct{}) (ctx context.Context, cancel context.CancelFunc, cut func() bool) {
	ctx, cancel = context.WithTimeout(r.Context(), wait)
	var ended atomic.Bool
	if closing != nil {
		go func() {
			select {
			case <-closing:
				ended.Store(true)
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel, ended.Load
}

// waitApplied is the Preference-Applied of a wait granted for wait that
// began at began: the wait granted, which the server held itself to; or,
// when the shutdown cut it short before what it waited for came about,
// the whole seconds it waited. Said as the wait granted, a 202 after a
// moment told the client that the transfer had not settled within the
// whole wait (openapi.yaml), when the server had stopped waiting for it.
func waitApplied(wait time.Duration, began time.Time, cut bool) string {
	if cut {
		wait = min(wait, time.Since(began))
	}
	return fmt.Sprintf("wait=%d", int(wait/time.Second))
}

// extendWrite moves the write and read deadlines of a request that was
// granted a wait past them: the server's write timeout bounds what a
// client may make transferd hold, except the waits it asked for and was
// granted. The request is read by then, but the server keeps a read
// pending to notice the client leaving; were it to time out (the server's
// read timeout, a body's read deadline) it would cancel the request's
// context and end the wait early.
func extendWrite(w http.ResponseWriter, r *http.Request, wait, writeTimeout time.Duration) {
	rc := http.NewResponseController(w)
	var deadline time.Time // none, as the server has no write timeout
	if writeTimeout > 0 {
		deadline = time.Now().Add(wait + writeTimeout)
		if err := rc.SetWriteDeadline(deadline); err != nil {
			zerolog.Ctx(r.Context()).Debug().Err(err).Msg("cannot extend the write deadline of a long poll")
		}
	}
	if err := rc.SetReadDeadline(deadline); err != nil {
		zerolog.Ctx(r.Context()).Debug().Err(err).Msg("cannot extend the read deadline of a long poll")
	}
}

// permit applies the tenant's allow-lists.
func (s *shared) permit(ctx context.Context, r *orchestrator.Request) error {
	if s.cfg.Tenants == nil {
		return nil
	}
	return s.cfg.Tenants.Permit(orchestrator.TenantOf(ctx), r)
}

// forwardTimeout bounds a callback's forward: a provider's callback is
// not held up for long by a store that does not answer.
const forwardTimeout = 2 * time.Second

// forward sends a callback's note to the other replicas (Config.
// Forwarder; nothing without one) when the event told something, whether
// or not this replica drives its transfer: the replica driving it now may
// not be the one that ends it. Kept here alone, what only a callback told
// (the leg of a transfer whose answer was lost and that the platform
// never lists, why a leg ended) was lost to the replica a hand-over (a
// rolling restart) or a crash gave the transfer to: an announced transfer
// to a busy target, the platform ending the caller's call with it, was
// then reported caller_hung_up. It costs a notification per callback
// (Bandwidth's: a few per transfer), beside the one of every save. A
// forward that fails is logged and counted, and the event still answered
// 2xx: the callback was valid, and the provider sending it again would
// only reach a replica at random.
func (s *shared) forward(r *http.Request, tenant, provider, id, note string) {
	if s.cfg.Forwarder == nil || note == "" {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	if err := s.cfg.Forwarder.ForwardCallback(ctx, tenant, provider, id, note); err != nil {
		s.forwarded.WithLabelValues("failed").Inc()
		zerolog.Ctx(r.Context()).Warn().Err(err).Str("transfer_id", id).
			Msg("cannot forward a callback to the other replicas: the replica that drives its transfer learns of it only from the provider's state")
		return
	}
	s.forwarded.WithLabelValues("sent").Inc()
}

// applyForwarded hands a callback note another replica forwarded to
// the receiver of its tenant and provider here, and wakes the transfer if
// this replica drives it. Every replica keeps the note, not only the one
// driving the transfer now: another may take the transfer over.
func (s *shared) applyForwarded(tenant, provider, id, note string) {
	rcv, ok := s.receiver(tenant, provider, id)
	if !ok {
		// This replica has no such account (a tenants file not reloaded
		// yet).
		s.forwarded.WithLabelValues("refused").Inc()
		return
	}
	if err := rcv.ApplyCallbackNote(id, note); err != nil {
		s.forwarded.WithLabelValues("refused").Inc()
		s.log.Warn().Err(err).Str("tenant", tenant).Str("provider", provider).Str("transfer_id", id).
			Msg("ignored a callback note forwarded by another replica")
		return
	}
	s.forwarded.WithLabelValues("applied").Inc()
	s.eng.Notify(id)
}

// receiver is the account that receives tenant's callbacks of provider
// about transfer id: the account this replica drives the transfer with,
// else the tenant's own, else the default one (as the engine chooses).
// The account a transfer is driven with is the one it was adopted with:
// after a reload that changed the account (a rotated secret, another
// budget: a new adapter) or removed it, the account in force is not the
// one that reads the callback's hangup cause or the leg it names.
func (s *shared) receiver(tenant, provider, id string) (CallbackReceiver, bool) {
	if p, ok := s.eng.DrivenBy(id, tenant, provider); ok {
		if rcv, ok := p.(CallbackReceiver); ok {
			return rcv, true
		}
	}
	if a := s.cfg.Accounts; a != nil {
		if p, ok := a.Provider(tenant, provider); ok {
			rcv, ok := p.(CallbackReceiver)
			return rcv, ok
		}
		if len(a.Names(tenant)) > 0 {
			return nil, false
		}
	}
	rcv, ok := s.cfg.Callbacks[provider]
	return rcv, ok
}
