package bwsim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBodyBytes bounds request bodies; Catapult bodies are small JSON objects.
const maxBodyBytes = 1 << 20

type apiHandlerFunc func(s *Sim, w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte)

type endpoint struct {
	op     string
	handle apiHandlerFunc
}

// apiRoute is what routing learnt from the method and path.
type apiRoute struct {
	found    bool   // the path is a known resource
	allow    string // the allowed methods, when the method is not one of them
	op       string
	handle   apiHandlerFunc
	user     string
	callID   string
	bridgeID string
	eventID  string
}

// routeAPI maps a path relative to the API root ("/users/{userId}/calls/...") to its
// operation and handler.
func routeAPI(method, path string) apiRoute {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	if len(seg) < 3 || seg[0] != "users" || slices.Contains(seg, "") {
		return apiRoute{}
	}
	rt := apiRoute{user: seg[1]}
	var eps map[string]endpoint
	switch rest := seg[2:]; {
	case len(rest) == 1 && rest[0] == "calls":
		eps = map[string]endpoint{
			http.MethodGet:  {OpListCalls, (*Sim).handleListCalls},
			http.MethodPost: {OpCreateCall, (*Sim).handleCreateCall},
		}
	case len(rest) == 2 && rest[0] == "calls":
		rt.callID = rest[1]
		eps = map[string]endpoint{
			http.MethodGet:  {OpGetCall, (*Sim).handleGetCall},
			http.MethodPost: {OpUpdateCall, (*Sim).handleUpdateCall},
		}
	case len(rest) == 3 && rest[0] == "calls":
		rt.callID = rest[1]
		switch rest[2] {
		case "audio":
			eps = map[string]endpoint{http.MethodPost: {OpAudio, (*Sim).handleCallAudio}}
		case "dtmf":
			eps = map[string]endpoint{http.MethodPost: {OpDTMF, (*Sim).handleDTMF}}
		case "events":
			eps = map[string]endpoint{http.MethodGet: {OpGetCall, (*Sim).handleCallEvents}}
		case "recordings", "transcriptions":
			eps = map[string]endpoint{http.MethodGet: {OpGetCall, (*Sim).handleEmptyCallList}}
		}
	case len(rest) == 4 && rest[0] == "calls" && rest[2] == "events":
		rt.callID, rt.eventID = rest[1], rest[3]
		eps = map[string]endpoint{http.MethodGet: {OpGetCall, (*Sim).handleCallEvent}}
	case len(rest) == 1 && rest[0] == "bridges":
		eps = map[string]endpoint{
			http.MethodGet:  {OpListBridges, (*Sim).handleListBridges},
			http.MethodPost: {OpCreateBridge, (*Sim).handleCreateBridge},
		}
	case len(rest) == 2 && rest[0] == "bridges":
		rt.bridgeID = rest[1]
		eps = map[string]endpoint{
			http.MethodGet:  {OpGetBridge, (*Sim).handleGetBridge},
			http.MethodPost: {OpUpdateBridge, (*Sim).handleUpdateBridge},
		}
	case len(rest) == 3 && rest[0] == "bridges":
		rt.bridgeID = rest[1]
		switch rest[2] {
		case "calls":
			eps = map[string]endpoint{http.MethodGet: {OpGetBridge, (*Sim).handleBridgeCalls}}
		case "audio":
			eps = map[string]endpoint{http.MethodPost: {OpAudio, (*Sim).handleBridgeAudio}}
		}
	}
	if eps == nil {
		return apiRoute{}
	}
	rt.found = true
	ep, ok := eps[method]
	if !ok {
		rt.allow = strings.Join(slices.Sorted(maps.Keys(eps)), ", ")
		return rt
	}
	rt.op, rt.handle = ep.op, ep.handle
	return rt
}

// isTransfer reports an update whose state is "transferring": the transfer operation, which
// faults target separately from other updates.
func isTransfer(body []byte) bool {
	var b struct {
		State any `json:"state"`
	}
	if json.Unmarshal(body, &b) != nil {
		return false
	}
	st, _ := b.State.(string)
	return st == StateTransferring
}

// APIHandler serves the v1 API with paths relative to the API root, e.g.
// "/users/u-sim/calls"; mount it with http.StripPrefix, e.g. under "/v1". Every request is
// recorded (see Requests), then checked in this order: credentials (401), route (404/405),
// user id (403), rate limits (403/429), injected faults.
func (s *Sim) APIHandler() http.Handler { return http.HandlerFunc(s.serveAPI) }

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	arrived := s.now()
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	rt := routeAPI(r.Method, r.URL.Path)
	if rt.op == OpUpdateCall && isTransfer(body) {
		rt.op = OpTransfer
	}
	// The response is buffered so the request is recorded before the client can see the
	// answer, and so a fault with Apply can replace what the handler wrote.
	bw := &bufferedWriter{header: make(http.Header)}
	drop, fault := s.handleAPI(bw, r, rt, body, readErr)
	rec := Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          string(body),
		Time:          arrived,
		Authorization: r.Header.Get("Authorization") != "",
		Operation:     rt.op,
		Location:      bw.header.Get("Location"),
		Dropped:       drop,
		Fault:         fault,
	}
	if !drop {
		rec.Status = bw.statusCode()
	}
	s.mu.Lock()
	s.requests = appendCapped(s.requests, rec, s.cfg.MaxRecords)
	s.notifyLocked()
	s.mu.Unlock()
	if drop {
		// net/http closes the connection without a response and logs nothing.
		panic(http.ErrAbortHandler)
	}
	bw.flush(w)
}

// handleAPI runs the checks and the handler; it reports whether the response must be dropped
// and which fault, if any, met the request (Request.Fault).
func (s *Sim) handleAPI(w *bufferedWriter, r *http.Request, rt apiRoute, body []byte, readErr error) (bool, string) {
	s.noteBase(r)
	if e := s.authenticate(r); e != nil {
		s.writeError(w, r, e)
		return false, ""
	}
	switch {
	case !rt.found:
		s.writeError(w, r, errResourceNotFound(r.URL.Path))
		return false, ""
	case rt.handle == nil:
		s.writeError(w, r, errMethodNotAllowed(rt.allow))
		return false, ""
	case rt.user != s.cfg.UserID:
		s.writeError(w, r, errUserAccess(rt.user))
		return false, ""
	}

	s.mu.Lock()
	limited := s.rateLimitLocked(rt.op)
	var f Fault
	var hasFault bool
	var kind string
	if limited == nil {
		// Injected faults come first: a test that injected one expects exactly it.
		if f, hasFault = s.takeFaultLocked(rt.op); hasFault {
			kind = faultInjected
		} else {
			f, kind, hasFault = s.randomFaultLocked(r.Method)
		}
	}
	closing := s.ctx
	s.mu.Unlock()
	if limited != nil {
		s.writeError(w, r, limited)
		return false, ""
	}
	if hasFault && f.Latency > 0 && !wait(r.Context(), closing, f.Latency) {
		return true, kind // the client left or the simulator closed meanwhile
	}
	faulty := hasFault && (f.Status != 0 || f.Drop)
	if faulty && !f.Apply {
		if f.Drop {
			return true, kind
		}
		s.writeError(w, r, s.faultError(f, rt, body))
		return false, kind
	}
	if readErr != nil {
		s.writeError(w, r, errValidation("Bad parameters: the request body could not be read: "+readErr.Error()))
	} else {
		rt.handle(s, w, r, rt, body)
	}
	if faulty { // Apply: the work is done, the answer is lost or replaced
		if f.Drop {
			return true, kind
		}
		w.reset()
		s.writeError(w, r, s.faultError(f, rt, body))
	}
	return false, kind
}

// wait sleeps for d unless either context ends first.
func wait(ctx, closing context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-closing.Done():
		return false
	}
}

// authenticate checks HTTP Basic {token}:{secret}; both empty in the Config accept anything.
func (s *Sim) authenticate(r *http.Request) *apiError {
	if s.cfg.Token == "" && s.cfg.Secret == "" {
		return nil
	}
	user, pass, ok := r.BasicAuth()
	tokenOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.Token)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Secret)) == 1
	if !ok || !tokenOK || !secretOK {
		return errUnauthorized()
	}
	return nil
}

// noteBase remembers the base derived from this request for URLs built outside requests
// (callbacks' callUri), unless a base was configured.
func (s *Sim) noteBase(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseURL == "" {
		s.seenBase = derivedBase(r)
	}
}

// derivedBase is the API base as the client addressed it: scheme, Host, and the prefix the
// handler is mounted under (what http.StripPrefix removed), "/v1" when there is none.
func derivedBase(r *http.Request) string {
	full := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		full = u.Path
	}
	prefix := "/v1"
	if strings.HasSuffix(full, r.URL.Path) && len(full) > len(r.URL.Path) {
		prefix = strings.TrimSuffix(full[:len(full)-len(r.URL.Path)], "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + prefix
}

// baseLocked is the absolute API base for URLs in a response to r.
func (s *Sim) baseLocked(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	return derivedBase(r)
}

// locationLocked is the Location of a created resource: absolute by default, relative with
// Config.RelativeLocation.
func (s *Sim) locationLocked(r *http.Request, kind, id string) string {
	base := s.baseLocked(r)
	if s.cfg.RelativeLocation && !s.cfg.AbsoluteLocation {
		if u, err := url.Parse(base); err == nil {
			base = u.Path
		}
	}
	return base + "/users/" + s.cfg.UserID + "/" + kind + "/" + id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the buffered writer cannot fail
}

// bufferedWriter holds a response until the request is recorded.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedWriter) statusCode() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

func (b *bufferedWriter) reset() {
	b.header = make(http.Header)
	b.status = 0
	b.body.Reset()
}

func (b *bufferedWriter) flush(w http.ResponseWriter) {
	maps.Copy(w.Header(), b.header)
	w.WriteHeader(b.statusCode())
	_, _ = w.Write(b.body.Bytes()) // a client that left is not our concern
}

// paging is the documented list pagination: page (default 0), size (default 25, max 1000),
// sortOrder asc|desc (default desc).
type paging struct {
	page, size int
	desc       bool
}

type bounds struct{ lo, hi int }

func parsePaging(r *http.Request) (paging, *apiError) {
	q := r.URL.Query()
	p := paging{size: 25, desc: true}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, errInvalidValue("request", "page", "want an integer from 0")
		}
		p.page = n
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return p, errInvalidValue("request", "size", "want an integer from 1 to 1000")
		}
		p.size = n
	}
	switch q.Get("sortOrder") {
	case "", "desc":
	case "asc":
		p.desc = false
	default:
		return p, errOneOf("request", "sortOrder", []string{"asc", "desc"})
	}
	return p, nil
}

// slice returns the bounds of the page within n items and whether more follow.
func (p paging) slice(n int) (bounds, bool) {
	lo := min(p.page*p.size, n)
	hi := min(lo+p.size, n)
	return bounds{lo, hi}, hi < n
}

// setLinks sets the Link header the docs show: first, previous and next pages.
func (s *Sim) setLinks(w http.ResponseWriter, r *http.Request, p paging, more bool) {
	link := func(page int, rel string) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(page))
		q.Set("size", strconv.Itoa(p.size))
		return "<" + s.baseLocked(r) + r.URL.Path + "?" + q.Encode() + `>; rel="` + rel + `"`
	}
	links := []string{link(0, "first")}
	if p.page > 0 {
		links = append(links, link(p.page-1, "previous"))
	}
	if more {
		links = append(links, link(p.page+1, "next"))
	}
	w.Header().Set("Link", strings.Join(links, ", "))
}
