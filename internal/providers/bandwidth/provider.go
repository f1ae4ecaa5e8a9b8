package bandwidth

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Name implements orchestrator.Provider.
func (c *Client) Name() string { return Name }

// Capabilities implements orchestrator.Provider: the union of both modes.
// Events are available when Catapult can reach transferd (PublicURL).
func (c *Client) Capabilities() orchestrator.Capabilities {
	return orchestrator.Capabilities{Attended: true, Announced: true, CallerID: true, Whisper: true,
		Diversion: true, Recording: true, Events: c.publicURL != ""}
}

// CapabilitiesFor implements orchestrator.ModeCapabilities. An announced
// transfer takes every option of the page. An attended transfer creates
// the consult call with POST /calls, which has a from (the caller id) and
// recording fields but no whisper or diversion.
func (c *Client) CapabilitiesFor(m orchestrator.Mode) orchestrator.Capabilities {
	caps := c.Capabilities()
	if m == orchestrator.ModeAttended {
		caps.Whisper, caps.Diversion = false, false
	}
	return caps
}

// Flow implements orchestrator.Provider: the platform's own transfer
// neither holds nor needs a join; the bridge consult does both.
func (c *Client) Flow(r *orchestrator.Request) orchestrator.Flow {
	if r.Mode == orchestrator.ModeAnnounced {
		return orchestrator.Flow{}
	}
	return orchestrator.Flow{Hold: true, Join: true, HangupAgent: true}
}

func announced(t *orchestrator.Transfer) bool { return t.Request.Mode == orchestrator.ModeAnnounced }

// Locate implements orchestrator.Provider.
func (c *Client) Locate(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	if announced(t) {
		return c.locateAnnounced(ctx, t)
	}
	return c.locateAttended(ctx, t)
}

// Hold implements orchestrator.Provider (attended only).
func (c *Client) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	if announced(t) {
		return nil // Flow has no hold: never called
	}
	return c.holdAttended(ctx, t)
}

// Unhold implements orchestrator.Provider. Announced, the flow has no
// hold, and the engine sends it only to a caller given back alone
// (Observation.CallerAlone): it puts the caller back with the agent.
func (c *Client) Unhold(ctx context.Context, t *orchestrator.Transfer) error {
	if announced(t) {
		return c.restoreAnnounced(ctx, t)
	}
	return c.unholdAttended(ctx, t)
}

// Dial implements orchestrator.Provider.
func (c *Client) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	c.recall(t)
	if announced(t) {
		return c.dialAnnounced(ctx, t)
	}
	return c.dialAttended(ctx, t)
}

// observe reads what Catapult shows of one transfer.
func (c *Client) observe(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Observation, error) {
	c.recall(t)
	if announced(t) {
		return c.observeAnnounced(ctx, t)
	}
	return c.observeAttended(ctx, t)
}

// WatchKey implements orchestrator.Provider: one watcher per account.
func (c *Client) WatchKey(*orchestrator.Transfer) string { return c.userPath }

// readConcurrency bounds the transfers read at once by one Read.
const readConcurrency = 8

// Read implements orchestrator.Provider. Catapult v1 has no listing of
// an account's live calls with their bridges, so one reading is each
// transfer's calls and bridge read by id, a few at a time; a transfer
// whose part fails reads as unknown without failing the others.
func (c *Client) Read(ctx context.Context, _ string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	c.causes.touch(ids)
	v := make(view, len(ts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, readConcurrency)
	for _, t := range ts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			obs, err := c.observe(ctx, t)
			mu.Lock()
			v[t.ID] = reading{obs, err, t.Seen.Consult}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return v, nil
}

type reading struct {
	obs orchestrator.Observation
	err error
	// seen: the record read for had seen the consult (a 404 for the leg
	// then says nothing: observeAttended, observeBLeg).
	seen bool
}

// view is one Read: each transfer's observation or error.
type view map[string]reading

// Observe implements orchestrator.View.
func (v view) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	r, ok := v[t.ID]
	if !ok {
		return orchestrator.Observation{}, orchestrator.E("bandwidth.observe", orchestrator.KindProviderUnavailable,
			errors.New("the transfer was not part of this reading"))
	}
	if r.err == nil && r.obs.Consult == orchestrator.ConsultAbsent && t.Seen.Consult && !r.seen {
		// Read for a record that had not seen the consult yet (a watcher
		// reads for the records as last reconciled), where a leg not
		// found is "not listed yet". The engine, which has seen it since,
		// would take that for the leg ended and hang up a live target:
		// for this record the reading is unknown.
		return orchestrator.Observation{}, orchestrator.E("bandwidth.observe", orchestrator.KindProviderUnavailable,
			errors.New("the consult leg was not found by a reading made before it was seen: whether it is up is unknown"))
	}
	return r.obs, r.err
}

// Complete implements orchestrator.Provider (attended only: the platform
// joins an announced transfer itself).
func (c *Client) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	if announced(t) {
		return nil
	}
	return c.completeAttended(ctx, t)
}

// HangupConsult implements orchestrator.Provider.
func (c *Client) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	c.recall(t)
	if announced(t) {
		return c.hangupAnnounced(ctx, t)
	}
	return c.hangupAttended(ctx, t)
}

var (
	// callIDRE: Catapult call ids are "c-" and lowercase alphanumerics
	// (c-qbs5kwrsyx6wsdi); v2-style ids add hyphens and hex.
	callIDRE = regexp.MustCompile(`^c-[A-Za-z0-9-]{1,100}$`)
	e164RE   = regexp.MustCompile(`^\+[1-9]\d{1,14}$`)
	sipRE    = regexp.MustCompile(`^(?i:sip):[^\s<>"]{1,250}$`)
)

// whisperLocales are the page's locales plus two the simulator accepts
// because the docs use them: the page prints "t or it_IT" for Italian (a
// typo of "it", but what it says), and its own Example 2 sends "en".
var whisperLocales = []string{"en_US", "en_UK", "es", "es_MX", "fr", "fr_FR", "de", "de_DE", "it", "it_IT", "t", "en"}

// whisperVoices are the page's voices; its Example 2 sends "julie", so
// they compare case-insensitively (as the simulator does).
var whisperVoices = []string{"Kate", "Susan", "Julie", "Dave", "Paul", "Bridget", "Esperanza", "Violeta",
	"Jorge", "Jolie", "Bernard", "Katrin", "Stefan", "Paola", "Luca"}

var diversionTreatments = []string{"none", "propagate", "stack"}

var diversionReasons = []string{"unknown", "user-busy", "no-answer", "unavailable", "unconditional",
	"time-of-day", "do-not-disturb", "deflection", "follow-me", "out-of-service", "away"}

// Validate implements orchestrator.Provider.
func (c *Client) Validate(r *orchestrator.Request) map[string]string {
	bad := map[string]string{}
	if r.Call.Domain != "" {
		bad["call.domain"] = "is not used by bandwidth; name the call with call.call_id"
	}
	if r.Call.User != "" {
		bad["call.user"] = "is not used by bandwidth; name the call with call.call_id"
	}
	switch {
	case r.Call.CallID == "":
		bad["call.call_id"] = "is required for bandwidth: the Catapult id of the caller's call (c-...)"
	case !callIDRE.MatchString(r.Call.CallID):
		bad["call.call_id"] = "must be a Catapult call id such as c-qbs5kwrsyx6wsdi"
	}
	attended := r.Mode != orchestrator.ModeAnnounced
	switch {
	case attended && r.Call.AgentCallID == "":
		bad["call.agent_call_id"] = "is required for an attended bandwidth transfer: the agent's call, bridged with call.call_id"
	case !attended && r.Call.AgentCallID != "":
		bad["call.agent_call_id"] = "is not used by an announced transfer"
	case attended && !callIDRE.MatchString(r.Call.AgentCallID):
		bad["call.agent_call_id"] = "must be a Catapult call id such as c-qbs5kwrsyx6wsdi"
	case attended && r.Call.AgentCallID == r.Call.CallID:
		bad["call.agent_call_id"] = "must differ from call.call_id"
	}
	if r.Target != "" && !e164RE.MatchString(r.Target) && !sipRE.MatchString(r.Target) {
		bad["target"] = "must be an E.164 number (+19195551234) or a sip: URI"
	}
	switch {
	case r.CallerID == "":
	case r.CallerID == "private" && attended:
		// POST /calls needs a from number the account owns.
		bad["caller_id"] = `"private" is possible only in mode announced; an attended consult call needs a number the account owns`
	case r.CallerID != "private" && !e164RE.MatchString(r.CallerID):
		bad["caller_id"] = `must be "private" or an E.164 number owned by the account`
	}
	if w := r.Whisper; w != nil {
		if w.Sentence == "" && w.FileURL == "" {
			bad["whisper"] = "needs a sentence or a file_url"
		}
		if w.FileURL != "" && !httpURL(w.FileURL) {
			bad["whisper.file_url"] = "must be an absolute http(s) URL"
		}
		if w.Gender != "" && !oneOfFold(w.Gender, []string{"female", "male"}) {
			bad["whisper.gender"] = `must be "female" or "male"`
		}
		if w.Locale != "" && !slices.Contains(whisperLocales, w.Locale) {
			bad["whisper.locale"] = "must be one of " + strings.Join(whisperLocales[:10], ", ")
		}
		if w.Voice != "" && !oneOfFold(w.Voice, whisperVoices) {
			bad["whisper.voice"] = "must be one of " + strings.Join(whisperVoices, ", ")
		}
	}
	if d := r.Diversion; d != nil {
		switch {
		case d.Treatment == "":
			bad["diversion.treatment"] = "is required: none, propagate or stack"
		case !slices.Contains(diversionTreatments, d.Treatment):
			bad["diversion.treatment"] = "must be none, propagate or stack"
		}
		switch {
		case d.Reason == "":
		case d.Treatment != "stack":
			// The page: "considered only when diversionTreatment is set to
			// stack". Sending it otherwise would be silently ignored.
			bad["diversion.reason"] = `is used only with treatment "stack"`
		case !slices.Contains(diversionReasons, d.Reason):
			bad["diversion.reason"] = "must be one of " + strings.Join(diversionReasons, ", ")
		}
	}
	if rec := r.Recording; rec != nil {
		switch {
		case rec.Enabled == nil && rec.FileFormat == "":
			bad["recording"] = "needs enabled or file_format"
		case rec.FileFormat != "" && rec.FileFormat != "wav" && rec.FileFormat != "mp3":
			bad["recording.file_format"] = `must be "wav" or "mp3"`
		}
	}
	return bad
}

func oneOfFold(v string, allowed []string) bool {
	return slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, v) })
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
