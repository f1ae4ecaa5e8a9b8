package nssim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies; NS API bodies are a few hundred bytes.
const maxBody = 1 << 20

// APIHandler returns the NS API v2 live-calls endpoints, with paths relative to the API base
// ("/domains/TEST/calls"). Mount it under the base path a client is configured with:
//
//	mux.Handle("/ns-api/v2/", http.StripPrefix("/ns-api/v2", sim.APIHandler()))
func (s *Sim) APIHandler() http.Handler {
	return withLeadingSlash(http.HandlerFunc(s.serveAPI))
}

// route is a matched API request.
type route struct {
	op     string // "" when no route matched
	domain string
	user   string // "" on domain-level routes
	callID string
	query  url.Values // a listing's query parameters (limit, start), calls' or subscriptions'
	// knownBefore: the request is served by a lagging API node (Chaos.LaggingNodeRate, for a
	// write LaggingNodeWriteRate), which does not know a session that started at or after
	// it; zero otherwise.
	knownBefore time.Time
}

// matchRoute maps a request onto an operation. Path segments are unescaped one by one so a
// Call-ID may hold any character, '/' included.
func matchRoute(method string, u *url.URL) route {
	p := strings.Trim(u.EscapedPath(), "/")
	raw := strings.Split(p, "/")
	seg := make([]string, len(raw))
	for i, r := range raw {
		v, err := url.PathUnescape(r)
		if err != nil || v == "" {
			return route{}
		}
		seg[i] = v
	}
	if seg[0] == "subscriptions" {
		rt := matchSubscription(method, seg[1:])
		if rt.op == OpSubscriptionList {
			rt.query = u.Query() // paged as the calls' listings are
		}
		return rt
	}
	if len(seg) < 3 || seg[0] != "domains" {
		return route{}
	}
	rt := route{domain: seg[1]}
	rest := seg[2:]
	if rest[0] == "users" {
		if len(rest) < 3 || rest[2] != "calls" {
			return route{}
		}
		rt.user = rest[1]
		rest = rest[2:]
	}
	if rest[0] != "calls" {
		return route{}
	}
	rest = rest[1:]
	switch {
	case len(rest) == 0 && method == http.MethodGet:
		rt.op = OpList
	case len(rest) == 0 && method == http.MethodPost && rt.user != "":
		rt.op = OpCreate
	case len(rest) == 1 && rest[0] == "count" && method == http.MethodGet:
		// Collections take a /count suffix [C-code]; it shadows a Call-ID named "count".
		rt.op = OpCount
	case len(rest) == 1 && rt.user != "" && method == http.MethodGet:
		rt.op = OpRead
	case len(rest) == 1 && rt.user != "" && method == http.MethodDelete:
		rt.op = OpDisconnect
	case len(rest) == 2 && rt.user != "" && method == http.MethodDelete && rest[1] == "reject":
		rt.op = OpReject
	case len(rest) == 2 && rt.user != "" && method == http.MethodPatch:
		switch rest[1] {
		case OpAnswer, OpHold, OpUnhold, OpTransfer, OpTransferPeer:
			rt.op = rest[1]
		}
	}
	if rt.op == "" {
		return route{}
	}
	if len(rest) > 0 && rt.op != OpCount {
		rt.callID = rest[0]
	}
	if rt.op == OpList {
		rt.query = u.Query()
	}
	return rt
}

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	rt := matchRoute(r.Method, r.URL)
	rec := s.beginRequest(r, rt.op, body)
	sw := &statusWriter{ResponseWriter: w}
	defer func() { s.finishRequest(rec, sw.status) }()

	f, faulty := s.takeFault(rt.op)
	if !faulty {
		f, faulty = s.randomFault(r.Method, rt.op)
	}
	if faulty {
		s.markInjected(rec, f.injected())
	}
	if faulty && f.Latency > 0 && !sleepContext(r.Context(), f.Latency) {
		return
	}
	switch {
	case faulty && f.Drop:
		if f.Apply {
			s.handle(&discardWriter{}, r, rt, body, readErr)
		}
		dropConnection(w)
	case faulty && f.Status != 0:
		if f.Apply {
			s.handle(&discardWriter{}, r, rt, body, readErr)
		}
		if f.RetryAfter != "" {
			sw.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Body != nil {
			sw.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(f.Status)
			io.WriteString(sw, *f.Body)
			break
		}
		msg := f.Message
		if msg == "" {
			msg = http.StatusText(f.Status)
		}
		writeError(sw, f.Status, msg)
	default:
		s.handle(sw, r, rt, body, readErr)
	}
}

func sleepContext(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handle authenticates and authorises a request, then performs it.
func (s *Sim) handle(w http.ResponseWriter, r *http.Request, rt route, body []byte, readErr error) {
	scope, ok := s.authenticate(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "Unauthorized: missing, invalid or expired credential")
		return
	}
	if rt.op == "" {
		// What real servers answer for routes their version lacks [C-code].
		writeError(w, http.StatusNotFound, "No Route Found")
		return
	}
	if isSubscriptionOp(rt.op) {
		if scope.ReadOnly && r.Method != http.MethodGet {
			writeError(w, http.StatusForbidden, "Permission Denied")
			return
		}
		s.apiSubscription(w, r, rt, scope, body)
		return
	}
	if status, msg := s.resolve(&rt, scope); status != 0 {
		writeError(w, status, msg)
		return
	}
	if scope.ReadOnly && r.Method != http.MethodGet {
		writeError(w, http.StatusForbidden, "Permission Denied")
		return
	}
	if readErr != nil {
		writeError(w, http.StatusBadRequest, "Request body too large or unreadable")
		return
	}
	switch rt.op {
	case OpList, OpCount, OpRead:
		s.mu.Lock()
		rt.knownBefore = s.laggingLocked(s.chaos.LaggingNodeRate)
		s.mu.Unlock()
	case OpCreate: // names no call yet
	default:
		s.mu.Lock()
		if s.chaos.LaggingNodeWriteRate > 0 {
			// Drawn only then, so that a Config.Seed draws as before without it.
			rt.knownBefore = s.laggingLocked(s.chaos.LaggingNodeWriteRate)
		}
		s.mu.Unlock()
	}
	switch rt.op {
	case OpList:
		s.apiList(w, rt)
	case OpCount:
		s.apiCount(w, rt)
	case OpRead:
		s.apiRead(w, rt)
	case OpCreate:
		s.apiCreate(w, rt, body)
	case OpAnswer:
		s.apiAnswer(w, rt)
	case OpHold, OpUnhold:
		s.apiHold(w, rt, rt.op == OpHold)
	case OpTransfer:
		s.apiTransfer(w, rt, scope, body)
	case OpTransferPeer:
		s.apiTransferPeer(w, rt, body)
	case OpDisconnect:
		s.apiDisconnect(w, rt)
	case OpReject:
		s.apiReject(w, rt)
	}
}

// authenticate checks the bearer credential.
func (s *Sim) authenticate(r *http.Request) (KeyScope, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return KeyScope{}, false
	}
	if len(s.cfg.APIKeys) == 0 {
		return KeyScope{Domain: "*"}, true
	}
	scope, ok := s.cfg.APIKeys[cred]
	return scope, ok
}

// resolve replaces "~" in the route by the credential's domain and user and checks the
// credential may address them. It returns a status and message when it may not.
func (s *Sim) resolve(rt *route, scope KeyScope) (int, string) {
	if rt.domain == "~" {
		if scope.Domain == "*" {
			return http.StatusBadRequest, "Domain ~ cannot be resolved: the credential is not bound to a domain"
		}
		rt.domain = scope.Domain
	}
	if scope.Domain != "*" && !strings.EqualFold(rt.domain, scope.Domain) {
		return http.StatusForbidden, "Domain not found or access denied"
	}
	if rt.domain == "*" && rt.op != OpList && rt.op != OpCount {
		return http.StatusBadRequest, "Domain * is only valid when listing calls"
	}
	if rt.user == "~" {
		if scope.User == "" {
			return http.StatusBadRequest, "User ~ cannot be resolved: the credential is not bound to a user"
		}
		rt.user = scope.User
	}
	if scope.User != "" && rt.user != "" && rt.user != scope.User {
		return http.StatusForbidden, "Permission Denied"
	}
	return 0, ""
}

// --- responses ------------------------------------------------------------------------------

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":500,"message":"Internal Server Error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// errorBody is the ErrorResponse schema, which SuccessResponse shares.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Code: status, Message: msg})
}

// writeAccepted answers an accepted action. The message text is not documented [G].
func writeAccepted(w http.ResponseWriter) {
	writeJSON(w, http.StatusAccepted, errorBody{Code: http.StatusAccepted, Message: "Accepted"})
}

func writeEmpty(w http.ResponseWriter, status int) {
	writeJSON(w, status, struct{}{})
}

// decodeBody reads a JSON object into v, an empty body reading as {}, and returns what is
// wrong with it, or "". Unknown fields are ignored, as the real server does [C-code].
func decodeBody(body []byte, v any) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return "Invalid value for " + typeErr.Field
		}
		return "Invalid JSON body"
	}
	return ""
}

// --- handlers -------------------------------------------------------------------------------

func (s *Sim) apiList(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	recs := s.recordsLocked(s.pageLocked(s.sortedLocked(rt.domain, s.routeFilter(rt)), rt.query))
	empty := s.cfg.EmptyListing
	s.mu.Unlock()
	switch {
	case len(recs) > 0 || empty == EmptyListingArray:
		writeJSON(w, http.StatusOK, recs)
	case empty == EmptyListingNull:
		writeJSON(w, http.StatusOK, nil)
	default: // EmptyListingNone [G]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	}
}

// pageLocked is the page of list that a listing's query asks for, as Config.ListPageSize and
// Config.ListParams say. A limit or start that is not a number is ignored, as if absent [G].
func (s *Sim) pageLocked(list []*session, q url.Values) []*session {
	return page(list, s.cfg.ListPageSize, s.cfg.ListParams, q)
}

// page is the page of list that q asks for on a PBX that pages by size (0: not at all) and
// honours params (a ListParams value): the calls' listings and the subscriptions' alike.
func page[T any](list []T, size int, params string, q url.Values) []T {
	start := 0
	if params == ListParamsHonoured || params == ListParamsStartOnly {
		if v, err := strconv.Atoi(q.Get("start")); err == nil && v > 0 {
			start = v
		}
	}
	if params == ListParamsHonoured || params == ListParamsLimitOnly {
		if v, err := strconv.Atoi(q.Get("limit")); err == nil && v > 0 {
			size = v
		}
	}
	if start >= len(list) {
		return nil
	}
	list = list[start:]
	if size > 0 && size < len(list) {
		list = list[:size]
	}
	return list
}

func (s *Sim) apiCount(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	n := len(s.sortedLocked(rt.domain, s.routeFilter(rt)))
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Total int `json:"total"`
	}{n})
}

// routeFilter selects the sessions a collection route lists: the domain's, or those a user
// takes part in, once they are listed (Chaos.ListingDelay).
func (s *Sim) routeFilter(rt route) func(*session) bool {
	if rt.user == "" {
		return func(sess *session) bool { return sess.listed && rt.knows(sess) && sess.visibleIn(rt.domain) }
	}
	return func(sess *session) bool { return sess.listed && rt.knows(sess) && sess.involves(rt.domain, rt.user) }
}

// knows reports whether the API node serving rt knows sess (route.knownBefore).
func (rt route) knows(sess *session) bool {
	return rt.knownBefore.IsZero() || sess.start.Before(rt.knownBefore)
}

// addressableLocked reports whether the API may find sess: always once it is listed; before
// that, only an action, and only with Chaos.UnlistedCalls == UnlistedFound.
func (s *Sim) addressableLocked(sess *session, action bool) bool {
	return sess.listed || (action && s.chaos.UnlistedCalls == UnlistedFound)
}

// findLocked resolves {call_id} against both legs' Call-IDs of the sessions the route's user
// is involved in [G: the notes think either leg's id works; the guide uses both]. When
// several live sessions carry the id (Chaos.DuplicateCallIDs) the oldest wins [G]. action
// says whether the request acts on the call (rather than reads it), for unlisted calls.
func (s *Sim) findLocked(rt route, action bool) (*session, side, bool) {
	var found *session
	for _, sess := range s.byCallID[rt.callID] {
		if !sess.involves(rt.domain, rt.user) || !s.addressableLocked(sess, action) || !rt.knows(sess) {
			continue // a lagging node does not know sess (Chaos.LaggingNodeRate)
		}
		if found == nil || sess.seq < found.seq {
			found = sess
		}
	}
	if found == nil {
		return nil, 0, false
	}
	sd, _ := found.sideOf(rt.callID)
	return found, sd, true
}

const callNotFound = "Call not found"

func (s *Sim) apiRead(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	sess, _, ok := s.findLocked(rt, false)
	if ok && s.cfg.ReadOtherLeg == OtherLegNotFound && !sess.owns(rt.domain, rt.user, rt.callID) {
		ok = false // a read scoped to the user's own leg (Config.ReadOtherLeg)
	}
	var rec ActiveCall
	if ok {
		rec = sess.record(s.render)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Sim) apiCreate(w http.ResponseWriter, rt route, body []byte) {
	var in struct {
		Synchronous *flexString `json:"synchronous"`
		CallID      flexString  `json:"call-id"`
		TermUser    flexString  `json:"call-term-user"`
		OrigUser    flexString  `json:"call-orig-user"`
		AutoAnswer  flexString  `json:"auto-answer-enabled"`
		CallerID    flexString  `json:"caller-id-number"`
	}
	if problem := decodeBody(body, &in); problem != "" {
		writeError(w, http.StatusBadRequest, problem)
		return
	}
	var missing []string
	if in.Synchronous == nil && s.cfg.StrictSynchronous {
		missing = append(missing, "synchronous")
	}
	if in.CallID == "" {
		missing = append(missing, "call-id")
	}
	if in.TermUser == "" {
		missing = append(missing, "call-term-user")
	}
	if len(missing) > 0 {
		writeError(w, http.StatusBadRequest, "Missing required field(s): "+strings.Join(missing, ", "))
		return
	}
	synchronous := false
	if in.Synchronous != nil {
		switch *in.Synchronous {
		case "yes":
			synchronous = true
		case "no", "":
		default:
			writeError(w, http.StatusBadRequest, "synchronous must be yes or no")
			return
		}
	}
	req := callRequest{
		callID:      string(in.CallID),
		termUser:    string(in.TermUser),
		origUser:    string(in.OrigUser),
		callerID:    string(in.CallerID),
		autoAnswer:  in.AutoAnswer == "yes",
		synchronous: synchronous,
	}
	s.mu.Lock()
	if !s.chaos.DuplicateCallIDs && (len(s.byCallID[req.callID]) > 0 || s.creating[req.callID]) {
		status := s.cfg.DuplicateCallIDStatus // a guess SetGuesses may change: read under mu
		s.mu.Unlock()
		writeError(w, status, "call-id already exists")
		return
	}
	if synchronous {
		// The real controller polls until the call can be read back [C-code]; here it exists
		// at once. The 200 body being the new ActiveCall is a guess [G].
		rec := s.createCallLocked(rt.domain, rt.user, req).record(s.render)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, rec)
		return
	}
	s.creating[req.callID] = true
	s.actionLocked(func() { s.createCallLocked(rt.domain, rt.user, req) })
	s.mu.Unlock()
	writeEmpty(w, http.StatusAccepted)
}

func (s *Sim) apiAnswer(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, sd, ok := s.findLocked(rt, true)
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	uSide := sess.userSide(rt.domain, rt.user, sd)
	l := sess.leg(uSide)
	if l.info != InfoAlerting {
		writeError(w, s.cfg.NotRingingStatus, "Call is not ringing")
		return
	}
	s.actionLocked(func() {
		if s.liveLocked(sess) && sess.leg(uSide) == l && l.info == InfoAlerting {
			s.answerLegLocked(sess, uSide)
		}
	})
	writeAccepted(w)
}

func (s *Sim) apiHold(w http.ResponseWriter, rt route, hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, sd, ok := s.findLocked(rt, true)
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	uSide := sess.userSide(rt.domain, rt.user, sd)
	s.actionLocked(func() { s.holdLocked(sess, uSide, hold) })
	writeAccepted(w)
}

func (s *Sim) apiTransfer(w http.ResponseWriter, rt route, scope KeyScope, body []byte) {
	var in struct {
		TermUser    flexString `json:"call-term-user"`
		Destination flexString `json:"destination"` // the spec example's name [G]
		Hostname    flexString `json:"hostname"`
		DestSession flexString `json:"call-destination-session-id"`
	}
	if problem := decodeBody(body, &in); problem != "" {
		writeError(w, http.StatusBadRequest, problem)
		return
	}
	target := string(in.TermUser)
	if target == "" {
		target = string(in.Destination)
	}
	attended := in.Hostname != "" || in.DestSession != ""

	s.mu.Lock()
	defer s.mu.Unlock()
	sess, sd, ok := s.findLocked(rt, true)
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	uSide := sess.userSide(rt.domain, rt.user, sd)
	blind := func() {
		s.actionLocked(func() { s.blindTransferLocked(sess, uSide, target, rt.domain) })
		writeAccepted(w)
	}
	switch {
	case attended && target != "":
		// The guide's pitfall: call-term-user "will prevent the attended transfer from
		// completing". What happens instead is unknown [G].
		if s.cfg.TransferWithTermUser == TermUserBlind {
			blind()
			return
		}
		writeAccepted(w)
	case attended:
		s.attendedLocked(w, rt, scope, sess, uSide, string(in.Hostname), string(in.DestSession))
	case target != "":
		blind()
	default:
		writeError(w, http.StatusBadRequest,
			"call-term-user is required for a blind transfer; hostname and call-destination-session-id for an attended transfer")
	}
}

// attendedLocked validates an attended transfer and schedules the merge.
func (s *Sim) attendedLocked(w http.ResponseWriter, rt route, scope KeyScope, sess *session, uSide side, hostname, destID string) {
	if destID == "" {
		writeError(w, http.StatusBadRequest, "call-destination-session-id is required for an attended transfer")
		return
	}
	dest, ok := s.sessions[destID]
	if ok {
		// Ground truth for the answer-to-join latency, stamped on arrival.
		if st := s.callIDs[dest.byCallID]; st != nil && st.joinRequestedAt.IsZero() {
			st.joinRequestedAt = s.cfg.Now()
		}
	}
	if !ok || !dest.visibleIn(scope.Domain) || !s.addressableLocked(dest, true) || !rt.knows(dest) {
		if s.cfg.UnknownDestination == DestinationNotFound {
			writeError(w, http.StatusNotFound, "Destination session not found")
			return
		}
		// Accepted, and nothing happens [G].
		writeAccepted(w)
		return
	}
	var match bool
	switch s.cfg.HostnameMatch {
	case HostnameOfDestination:
		match = strings.EqualFold(hostname, dest.core)
	case HostnameOfEither:
		match = strings.EqualFold(hostname, sess.core) || strings.EqualFold(hostname, dest.core)
	default:
		match = strings.EqualFold(hostname, sess.core)
	}
	if !match {
		if s.cfg.WrongHostname == HostnameReject {
			writeError(w, http.StatusBadRequest, "hostname does not match the core server of the call")
			return
		}
		// Accepted, and the switch never finds the call to merge [G].
		writeAccepted(w)
		return
	}
	s.actionLocked(func() { s.attendedTransferLocked(sess, dest, rt.domain, rt.user, uSide) })
	writeAccepted(w)
}

func (s *Sim) apiTransferPeer(w http.ResponseWriter, rt route, body []byte) {
	var in struct {
		Destination flexString `json:"destination"`
	}
	if problem := decodeBody(body, &in); problem != "" {
		writeError(w, http.StatusBadRequest, problem)
		return
	}
	if in.Destination == "" {
		writeError(w, http.StatusBadRequest, "Missing required field(s): destination")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, sd, ok := s.findLocked(rt, true)
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	uSide := sess.userSide(rt.domain, rt.user, sd)
	s.actionLocked(func() { s.blindTransferLocked(sess, uSide, string(in.Destination), rt.domain) })
	writeAccepted(w)
}

func (s *Sim) apiDisconnect(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, _, ok := s.findLocked(rt, true)
	if !ok {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	if sess.answered.IsZero() {
		switch s.cfg.RingingDisconnect {
		case RingingIgnored:
			writeEmpty(w, http.StatusOK)
			return
		case RingingRefused:
			writeError(w, http.StatusConflict, "Call is ringing; reject it instead")
			return
		}
	}
	// 200 rather than 202: the hang-up is done when the response leaves [C-doc]. The whole
	// session ends, not only the user's leg [G].
	s.endLocked(sess, EndDisconnected, "disconnected by "+rt.user+"@"+rt.domain)
	writeEmpty(w, http.StatusOK)
}

func (s *Sim) apiReject(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, sd, ok := s.findLocked(rt, true)
	// "Reject a call with orig call ID" [C-doc]: the term leg's id does not address it [G].
	if !ok || sd != origSide {
		writeError(w, http.StatusNotFound, callNotFound)
		return
	}
	if !sess.answered.IsZero() {
		writeError(w, s.cfg.NotRingingStatus, "Call is not ringing; disconnect it instead")
		return
	}
	s.actionLocked(func() {
		if s.liveLocked(sess) && sess.answered.IsZero() {
			s.endLocked(sess, EndRejected, "rejected by "+rt.user+"@"+rt.domain)
		}
	})
	writeEmpty(w, http.StatusAccepted)
}

// withLeadingSlash lets a handler be mounted with http.StripPrefix whether or not the
// prefix ends in a slash.
func withLeadingSlash(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/") {
			r = r.Clone(r.Context())
			r.URL.Path = "/" + r.URL.Path
			if r.URL.RawPath != "" {
				r.URL.RawPath = "/" + r.URL.RawPath
			}
		}
		h.ServeHTTP(w, r)
	})
}
