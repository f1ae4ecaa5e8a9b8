package bwsim

// This file is the "Transfer active Call" operation (postTransferCall.md, notes §3.5 and
// §12.4): an update with state "transferring".

// whisperLocales are the page's locales. The page prints "t or it_IT" for Italian, an obvious
// typo of "it", and its own Example 2 (node, C# and ruby) sends locale "en"; both are
// accepted too so every documented example works.
func whisperLocales() []string {
	return []string{"en_US", "en_UK", "es", "es_MX", "fr", "fr_FR", "de", "de_DE", "it", "it_IT", "t", "en"}
}

// whisperVoices are the page's voices; Example 2 sends "julie", so they match in any case.
func whisperVoices() []string {
	return []string{
		"Kate", "Susan", "Julie", "Dave", "Paul", // English US
		"Bridget",                       // English UK
		"Esperanza", "Violeta", "Jorge", // Spanish
		"Jolie", "Bernard", // French
		"Katrin", "Stefan", // German
		"Paola", "Luca", // Italian
	}
}

func diversionTreatments() []string { return []string{"none", "propagate", "stack"} }

func diversionReasons() []string {
	return []string{
		"unknown", "user-busy", "no-answer", "unavailable", "unconditional", "time-of-day",
		"do-not-disturb", "deflection", "follow-me", "out-of-service", "away",
	}
}

// transferRequest is a validated transfer body (its recording fields are common to updates).
type transferRequest struct {
	to                 string
	callerID           string // "" when not given
	callbackURL        string
	whisper            *Audio
	diversionTreatment string
	diversionReason    string
}

func parseTransfer(in jsonBody) (transferRequest, *apiError) {
	var t transferRequest
	var ok bool
	var e *apiError
	if t.to, ok, e = in.str("transferTo"); e != nil {
		return t, e
	} else if !ok || t.to == "" {
		// The page's table says "No", but the docs' own error example is this message.
		return t, errMissing("call", "transferTo")
	}
	if !isDialable(t.to) {
		return t, errInvalidValue("call", "transferTo", "want an E.164 number or a SIP URI")
	}
	if t.callerID, _, e = in.str("transferCallerId"); e != nil {
		return t, e
	}
	if t.callbackURL, e = callbackURL(in, "callbackUrl"); e != nil {
		return t, e
	}
	if w, ok, e := in.object("whisperAudio"); e != nil {
		return t, e
	} else if ok {
		if t.whisper, e = parseAudio(w); e != nil {
			return t, e
		}
	}
	if t.diversionTreatment, _, e = in.oneOf("diversionTreatment", diversionTreatments(), false); e != nil {
		return t, e
	}
	if t.diversionReason, _, e = in.oneOf("diversionReason", diversionReasons(), false); e != nil {
		return t, e
	}
	if t.diversionTreatment == "stack" && t.diversionReason == "" {
		t.diversionReason = "unknown" // "Default to unknown"; only considered with stack
	}
	return t, nil
}

// parseAudio reads the page's "Audio Parameters" (also the body of POST .../audio). It
// returns nil when neither a file nor a sentence is given, which stops audio.
func parseAudio(in jsonBody) (*Audio, *apiError) {
	var a Audio
	var e *apiError
	for _, f := range []struct {
		name string
		dst  *string
	}{{"fileUrl", &a.FileURL}, {"sentence", &a.Sentence}, {"tag", &a.Tag}} {
		if *f.dst, _, e = in.str(f.name); e != nil {
			return nil, e
		}
	}
	if a.Gender, _, e = in.oneOf("gender", []string{"female", "male"}, true); e != nil {
		return nil, e
	}
	if a.Locale, _, e = in.oneOf("locale", whisperLocales(), false); e != nil {
		return nil, e
	}
	if a.Voice, _, e = in.oneOf("voice", whisperVoices(), true); e != nil {
		return nil, e
	}
	if a.LoopEnabled, _, e = in.boolean("loopEnabled"); e != nil {
		return nil, e
	}
	if v, ok, e := in.integer("volume"); e != nil {
		return nil, e
	} else if ok {
		if v < -4 || v > 4 {
			return nil, errInvalidValue(in.resource, in.prefix+"volume", "want -4 to 4")
		}
		a.Volume = v
	}
	if a.FileURL == "" && a.Sentence == "" {
		return nil, nil
	}
	return &a, nil
}

// callerIDAllowed applies the page's rule: "private", the incoming call's from number (for
// an inbound call), or any number the user owns.
func (s *Sim) callerIDAllowed(c *call, id string) bool {
	return id == "" || id == "private" || (c.Direction == DirectionIn && id == c.From) || s.owns(id)
}

// transferLocked moves the active call a to a new outbound leg and returns that leg.
func (s *Sim) transferLocked(a *call, t transferRequest) *call {
	// A transferred call keeps one audio path: an earlier connected transfer leg is hung up
	// and the call leaves its bridge (it "hears ringing" now). Both are [GUESS]: nothing
	// documents transferring a bridged call.
	if p := s.calls[a.peer]; p != nil {
		a.peer, p.peer = "", ""
		s.endLocked(p, StateCompleted, CauseNormalClearing)
	}
	if br := s.bridges[a.BridgeID]; br != nil {
		s.leaveBridgeLocked(br, a)
		s.refreshBridgeLocked(br)
	}
	a.State = StateTransferring
	a.TransferTo = t.to
	a.TransferCallerID = t.callerID

	// "Omitting transferCallerId will pass along the number of the original incoming call"
	// (v1 BXML docs), applied to the REST transfer [INF]; TransferLegFrom reads it.
	from := t.callerID
	switch {
	case from == "" && s.cfg.TransferLegFrom == TransferLegFromCalledNumber:
		from = a.To
	case from == "":
		from = a.From
	case from == "private" && s.cfg.TransferLegFrom == TransferLegFromAnonymous:
		from = "anonymous"
	}
	b := s.newCallLocked(DirectionOut, from, t.to)
	b.ParentCallID = a.ID
	b.CallTimeout = ceilSeconds(s.cfg.RingTimeout)
	b.CallbackURL = t.callbackURL
	if b.CallbackURL == "" && s.cfg.TransferLegCallback == TransferLegCallbackALeg {
		b.CallbackURL = a.CallbackURL
	}
	b.WhisperAudio = t.whisper
	b.DiversionTreatment = t.diversionTreatment
	b.DiversionReason = t.diversionReason
	a.TransferCallID = b.ID
	s.recordEventLocked(a, "transfer", b.ID)
	s.dialLocked(b, s.cfg.RingTimeout)
	return b
}
