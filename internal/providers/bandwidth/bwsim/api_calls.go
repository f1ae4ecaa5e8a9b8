package bwsim

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// This file holds the handlers of the calls resource (notes §3).

func (s *Sim) handleGetCall(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.readableCallLocked(rt.callID)
	if c == nil {
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	}
	writeJSON(w, http.StatusOK, s.renderCallLocked(r, c))
}

func (s *Sim) handleCallEvents(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.readableCallLocked(rt.callID)
	if c == nil {
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	}
	writeJSON(w, http.StatusOK, append([]callEvent{}, c.events...))
}

func (s *Sim) handleCallEvent(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.readableCallLocked(rt.callID)
	if c == nil {
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	}
	for _, ev := range c.events {
		if ev.ID == rt.eventID {
			writeJSON(w, http.StatusOK, ev)
			return
		}
	}
	s.writeError(w, r, errResourceNotFound(r.URL.Path))
}

// handleEmptyCallList serves recordings and transcriptions: nothing is ever recorded.
func (s *Sim) handleEmptyCallList(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readableCallLocked(rt.callID) == nil {
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	}
	writeJSON(w, http.StatusOK, []struct{}{})
}

// handleListCalls is GET calls with the filters bridgeId, conferenceId, from and to.
// Pagination does not apply to the bridgeId and conferenceId filters (calls.md).
func (s *Sim) handleListCalls(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	pg, e := parsePaging(r)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	q := r.URL.Query()
	bridgeID, conferenceID := q.Get("bridgeId"), q.Get("conferenceId")
	from, to := q.Get("from"), q.Get("to")
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched []*call
	if conferenceID == "" { // conferences are not simulated: nothing is ever in one
		for _, c := range s.sortedCallsLocked() {
			switch {
			case !s.listedLocked(c),
				bridgeID != "" && c.BridgeID != bridgeID && c.PendingBridgeID != bridgeID,
				from != "" && c.From != from,
				to != "" && c.To != to:
				continue
			}
			matched = append(matched, c)
		}
	}
	if pg.desc {
		slices.Reverse(matched)
	}
	if bridgeID == "" && conferenceID == "" {
		page, more := pg.slice(len(matched))
		matched = matched[page.lo:page.hi]
		s.setLinks(w, r, pg, more)
	}
	out := make([]apiCall, 0, len(matched))
	for _, c := range matched {
		out = append(out, s.renderCallLocked(r, c))
	}
	writeJSON(w, http.StatusOK, out)
}

// createCall is a validated POST calls body.
type createCall struct {
	from, to       string
	timeout        time.Duration
	callbackURL    string
	callbackMethod string
	callbackMS     int
	fallbackURL    string
	bridgeID       string
	conferenceID   string
	tag            string
	recording      recordingUpdate
	sipHeaders     map[string]string
}

func (s *Sim) parseCreateCall(in jsonBody) (createCall, *apiError) {
	var cc createCall
	var ok bool
	var e *apiError
	if cc.from, ok, e = in.str("from"); e != nil {
		return cc, e
	} else if !ok || cc.from == "" {
		return cc, errMissing("call", "from")
	}
	if !s.owns(cc.from) {
		// validation-error is [INF]; errors.md also has 401 number-access-denied.
		return cc, errValidation("The from number `" + cc.from + "` is not allowed. It must be a phone number owned by user")
	}
	if cc.to, ok, e = in.str("to"); e != nil {
		return cc, e
	} else if !ok || cc.to == "" {
		return cc, errMissing("call", "to")
	}
	if !isDialable(cc.to) {
		return cc, errInvalidValue("call", "to", "want an E.164 number or a SIP URI")
	}
	cc.timeout = s.cfg.RingTimeout
	if n, ok, e := in.integer("callTimeout"); e != nil {
		return cc, e
	} else if ok {
		if n < 1 || n > 300 {
			return cc, errInvalidValue("call", "callTimeout", "want 1 to 300 seconds")
		}
		cc.timeout = time.Duration(n) * time.Second
	}
	if cc.callbackURL, e = callbackURL(in, "callbackUrl"); e != nil {
		return cc, e
	}
	if cc.fallbackURL, e = callbackURL(in, "fallbackUrl"); e != nil {
		return cc, e
	}
	if cc.callbackMethod, _, e = in.oneOf("callbackHttpMethod", []string{http.MethodGet, http.MethodPost}, true); e != nil {
		return cc, e
	}
	if n, ok, e := in.integer("callbackTimeout"); e != nil {
		return cc, e
	} else if ok {
		if n < 1 || n > 10000 {
			return cc, errInvalidValue("call", "callbackTimeout", "want 1 to 10000 milliseconds")
		}
		cc.callbackMS = n
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"bridgeId", &cc.bridgeID}, {"conferenceId", &cc.conferenceID}, {"tag", &cc.tag}} {
		if *f.dst, _, e = in.str(f.name); e != nil {
			return cc, e
		}
	}
	if cc.recording, e = parseRecording(in); e != nil {
		return cc, e
	}
	if cc.sipHeaders, _, e = in.stringMap("sipHeaders"); e != nil {
		return cc, e
	}
	if len(cc.sipHeaders) > 5 {
		return cc, errInvalidValue("call", "sipHeaders", "at most 5 headers")
	}
	for k := range cc.sipHeaders {
		if !strings.HasPrefix(strings.ToUpper(k), "X-") {
			return cc, errInvalidValue("call", "sipHeaders", "header names must start with X-")
		}
	}
	return cc, nil
}

// callbackURL reads an optional absolute http(s) URL; callback-invalid-url is [DOC].
func callbackURL(in jsonBody, name string) (string, *apiError) {
	v, ok, e := in.str(name)
	if e != nil || !ok || v == "" {
		return "", e
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errBadRequest("callback-invalid-url", "The "+name+" `"+v+"` is not a valid URL")
	}
	return v, nil
}

// handleCreateCall is POST calls: 201 + Location, empty body. The callee's Behaviour decides
// what happens next.
func (s *Sim) handleCreateCall(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("call", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	cc, e := s.parseCreateCall(in)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	if cc.conferenceID != "" {
		s.writeError(w, r, &apiError{Status: http.StatusNotFound, Category: "not-found", Code: "conference-not-found",
			Message: "The conference `" + cc.conferenceID + "` could not be found"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cc.bridgeID != "" {
		b := s.bridges[cc.bridgeID]
		switch {
		case b == nil:
			s.writeError(w, r, errBridgeNotFound(cc.bridgeID))
			return
		case b.State == BridgeCompleted:
			s.writeError(w, r, errBadRequest("bridge-invalid-state", "The bridge `"+b.ID+"` is in an invalid state `completed`"))
			return
		case len(b.CallIDs) >= 2:
			s.writeError(w, r, s.errForbidden("bridge-callIds-overflow", "Bridge `"+b.ID+"` already has 2 calls"))
			return
		}
	}
	c := s.newCallLocked(DirectionOut, cc.from, cc.to)
	c.CallTimeout = ceilSeconds(cc.timeout)
	c.CallbackURL = cc.callbackURL
	c.CallbackHTTPMethod = cc.callbackMethod
	c.CallbackTimeoutMS = cc.callbackMS
	c.FallbackURL = cc.fallbackURL
	c.PendingBridgeID = cc.bridgeID
	s.setTagLocked(c, cc.tag)
	c.SIPHeaders = cc.sipHeaders
	cc.recording.apply(c)
	s.dialLocked(c, cc.timeout)
	s.hideUntilListedLocked(c)
	w.Header().Set("Location", s.locationLocked(r, "calls", c.ID))
	w.WriteHeader(http.StatusCreated)
}

func ceilSeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// recordingUpdate holds the recording fields shared by create and update.
type recordingUpdate struct {
	enabled, transcription *bool
	format                 string
}

func parseRecording(in jsonBody) (recordingUpdate, *apiError) {
	var u recordingUpdate
	if v, ok, e := in.boolean("recordingEnabled"); e != nil {
		return u, e
	} else if ok {
		u.enabled = &v
	}
	if v, ok, e := in.boolean("transcriptionEnabled"); e != nil {
		return u, e
	} else if ok {
		u.transcription = &v
	}
	var e *apiError
	if u.format, _, e = in.oneOf("recordingFileFormat", []string{"wav", "mp3"}, false); e != nil {
		return u, e
	}
	if _, _, e := in.integer("recordingMaxDuration"); e != nil {
		return u, e
	}
	return u, nil
}

func (u recordingUpdate) apply(c *call) {
	if u.enabled != nil {
		c.RecordingEnabled = *u.enabled
	}
	if u.transcription != nil {
		c.TranscriptionEnabled = *u.transcription
	}
	if u.format != "" {
		c.RecordingFileFormat = u.format
	}
}

// callUpdate is a validated POST calls/{id} body.
type callUpdate struct {
	state       string
	recording   recordingUpdate
	callbackURL *string
	tag         *string
	transfer    transferRequest // when state is "transferring"
}

func parseCallUpdate(in jsonBody) (callUpdate, *apiError) {
	var u callUpdate
	var e *apiError
	// "started" is a state but not one an update can ask for.
	if u.state, _, e = in.oneOf("state", []string{StateActive, StateRejected, StateCompleted, StateTransferring}, false); e != nil {
		return u, e
	}
	if u.recording, e = parseRecording(in); e != nil {
		return u, e
	}
	if v, e := callbackURL(in, "callbackUrl"); e != nil {
		return u, e
	} else if _, present := in.get("callbackUrl"); present {
		u.callbackURL = &v
	}
	if v, ok, e := in.str("tag"); e != nil {
		return u, e
	} else if ok {
		u.tag = &v
	}
	if u.state == StateTransferring {
		if u.transfer, e = parseTransfer(in); e != nil {
			return u, e
		}
	}
	return u, nil
}

// handleUpdateCall is POST calls/{id}: answer, reject, hang up, recording, callbackUrl and
// tag (200, empty body), or transfer (201 + Location of the new leg, empty body). The body
// is validated before the call's state, so a bad body is a 400 whatever the state [GUESS].
// Everything but a transfer is an action: checked now, applied now or after
// Config.ActionDelay.
func (s *Sim) handleUpdateCall(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("call", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	u, e := parseCallUpdate(in)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.apiCallLocked(rt.callID)
	if c == nil {
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	}
	if e := s.checkCallUpdateLocked(c, u); e != nil {
		s.writeError(w, r, e)
		return
	}
	if u.state == StateTransferring {
		// A transfer creates a call, whose id the answer carries: it applies at once.
		s.applyCallUpdateLocked(c, u)
		b := s.transferLocked(c, u.transfer)
		s.hideUntilListedLocked(b)
		w.Header().Set("Location", s.locationLocked(r, "calls", b.ID))
		w.WriteHeader(http.StatusCreated)
		return
	}
	id := c.ID
	s.actLocked(OpUpdateCall, id, body, func() string {
		c := s.calls[id] // calls are never forgotten but by Reset, which drops actions
		if e := s.checkCallUpdateLocked(c, u); e != nil {
			return e.Message
		}
		s.applyCallUpdateLocked(c, u)
		return ""
	})
	w.WriteHeader(http.StatusOK)
}

// checkCallUpdateLocked refuses an update the call's state does not allow.
func (s *Sim) checkCallUpdateLocked(c *call, u callUpdate) *apiError {
	if c.Ended() {
		if u.state != "" {
			return s.errStateFinal(c.ID, c.State)
		}
		return s.errInvalidState(c.ID, c.State)
	}
	var allowed bool
	switch u.state {
	case "", StateCompleted:
		allowed = true
	case StateActive:
		allowed = c.State == StateActive || (c.State == StateStarted && c.Direction == DirectionIn)
	case StateRejected:
		allowed = c.State == StateStarted && c.Direction == DirectionIn
	case StateTransferring:
		allowed = c.State == StateActive
	}
	if !allowed {
		return s.errInvalidState(c.ID, c.State)
	}
	if u.state == StateTransferring && !s.callerIDAllowed(c, u.transfer.callerID) {
		return errCallerID(u.transfer.callerID)
	}
	return nil
}

// applyCallUpdateLocked applies a checked update, but for the transfer itself.
func (s *Sim) applyCallUpdateLocked(c *call, u callUpdate) {
	u.recording.apply(c)
	if u.tag != nil {
		s.setTagLocked(c, *u.tag)
	}
	if u.callbackURL != nil && u.state != StateTransferring {
		// In a transfer, callbackUrl is the new leg's.
		c.CallbackURL = *u.callbackURL
	}
	switch u.state {
	case StateActive:
		s.answerLocked(c)
	case StateRejected:
		s.endLocked(c, StateRejected, CauseCallRejected)
	case StateCompleted:
		s.hangupByAppLocked(c)
	}
}

// setTagLocked sets the call's tag and remembers it for the ground truth.
func (s *Sim) setTagLocked(c *call, tag string) {
	c.Tag = tag
	if tag != "" && !slices.Contains(c.tags, tag) {
		c.tags = append(c.tags, tag)
	}
}

// handleCallAudio is POST calls/{id}/audio: play or speak; an empty fileUrl or sentence
// stops. Accepted and recorded, 200.
func (s *Sim) handleCallAudio(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("call", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	a, e := parseAudio(in)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.apiCallLocked(rt.callID)
	switch {
	case c == nil:
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	case !c.live():
		s.writeError(w, r, s.errForbidden("call-audio-invalid-state", "Unable to play audio to call `"+c.ID+"` in state `"+c.State+"`"))
		return
	}
	c.Audio = a
	s.recordEventLocked(c, "playback", audioData(a))
	w.WriteHeader(http.StatusOK)
}

// handleBridgeAudio is POST bridges/{id}/audio.
func (s *Sim) handleBridgeAudio(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("bridge", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	a, e := parseAudio(in)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bridges[rt.bridgeID]
	switch {
	case b == nil:
		s.writeError(w, r, errBridgeNotFound(rt.bridgeID))
		return
	case b.State == BridgeCompleted:
		s.writeError(w, r, errBadRequest("bridge-invalid-state", "The bridge `"+b.ID+"` is in an invalid state `completed`"))
		return
	}
	b.Audio = a
	w.WriteHeader(http.StatusOK)
}

func audioData(a *Audio) string {
	switch {
	case a == nil:
		return "stop"
	case a.FileURL != "":
		return a.FileURL
	default:
		return a.Sentence
	}
}

// handleDTMF is POST calls/{id}/dtmf {"dtmfOut"}: accepted and recorded, 200.
func (s *Sim) handleDTMF(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("call", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	digits, ok, e := in.str("dtmfOut")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	if !ok || digits == "" {
		s.writeError(w, r, errMissing("call", "dtmfOut"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.apiCallLocked(rt.callID)
	switch {
	case c == nil:
		s.writeError(w, r, errCallNotFound(rt.callID))
		return
	case !c.live():
		s.writeError(w, r, s.errInvalidState(c.ID, c.State))
		return
	}
	s.recordEventLocked(c, "dtmf", digits)
	w.WriteHeader(http.StatusOK)
}
