package bwsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Call states, as documented for Catapult v1 calls.
const (
	StateStarted      = "started"
	StateActive       = "active"
	StateTransferring = "transferring"
	StateCompleted    = "completed"
	StateRejected     = "rejected"
)

// Bridge states, as documented for Catapult v1 bridges.
const (
	BridgeCreated   = "created"
	BridgeActive    = "active"
	BridgeHold      = "hold"
	BridgeCompleted = "completed"
)

// Hangup causes the simulator reports (apiCallbacks/hangup.md).
const (
	CauseNormalClearing   = "NORMAL_CLEARING"
	CauseUserBusy         = "USER_BUSY"
	CauseCallRejected     = "CALL_REJECTED"
	CauseNoAnswer         = "NO_ANSWER"
	CauseOriginatorCancel = "ORIGINATOR_CANCEL"
)

// Call directions.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Behaviour modes: how a dialled number reacts to an outbound leg.
const (
	// ModeAnswer answers at once (asynchronously, after the 201), or after Delay if set.
	ModeAnswer = "answer"
	// ModeAfter answers after Delay, or Config.AnswerDelay when Delay is 0.
	ModeAfter = "after"
	// ModeNever rings until the leg's callTimeout expires: a timeout event, then a hangup with
	// NO_ANSWER.
	ModeNever = "never"
	// ModeBusy fails the leg with USER_BUSY (after Delay, if set).
	ModeBusy = "busy"
	// ModeReject fails the leg with CALL_REJECTED (after Delay, if set).
	ModeReject = "reject"
	// ModeManual rings until Sim.Answer, Sim.Hangup or Sim.Timeout, or the callTimeout.
	ModeManual = "manual"
)

// Errors of the Go control API.
var (
	ErrNotFound     = errors.New("bwsim: not found")
	ErrInvalidState = errors.New("bwsim: invalid state")
	ErrInvalid      = errors.New("bwsim: invalid argument")
	// ErrNotRinging is Answer's error when nothing rings at the number: a state of the
	// calls, not a number that names nothing (any number may be rung), so it is an
	// ErrInvalidState, 409 on the control surface as nssim's is.
	ErrNotRinging = fmt.Errorf("bwsim: nothing is ringing: %w", ErrInvalidState)
)

// Call is a snapshot of one simulated call leg. It is what the Go and control APIs return;
// the v1 API renders its own camelCase representation.
type Call struct {
	ID        string `json:"id"`
	Direction string `json:"direction"` // DirectionIn or DirectionOut
	From      string `json:"from"`
	To        string `json:"to"`
	State     string `json:"state"`
	// Cause is the hangup cause once the call ended.
	Cause      string    `json:"cause,omitempty"`
	StartTime  time.Time `json:"start_time"`
	ActiveTime time.Time `json:"active_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
	// CallTimeout is how long an outbound leg rings, in seconds.
	CallTimeout        int    `json:"call_timeout,omitempty"`
	CallbackURL        string `json:"callback_url,omitempty"`
	CallbackHTTPMethod string `json:"callback_http_method,omitempty"`
	// CallbackTimeoutMS is the per-callback timeout in milliseconds (0 = 10000).
	CallbackTimeoutMS int    `json:"callback_timeout_ms,omitempty"`
	FallbackURL       string `json:"fallback_url,omitempty"`
	Tag               string `json:"tag,omitempty"`
	// BridgeID is the bridge the call is a member of now.
	BridgeID string `json:"bridge_id,omitempty"`
	// PendingBridgeID is the bridge an outbound call was created into; it joins when answered.
	PendingBridgeID      string            `json:"pending_bridge_id,omitempty"`
	RecordingEnabled     bool              `json:"recording_enabled"`
	RecordingFileFormat  string            `json:"recording_file_format"`
	TranscriptionEnabled bool              `json:"transcription_enabled"`
	SIPHeaders           map[string]string `json:"sip_headers,omitempty"`
	// TransferTo and TransferCallerID are what the latest transfer of this call asked for.
	TransferTo       string `json:"transfer_to,omitempty"`
	TransferCallerID string `json:"transfer_caller_id,omitempty"`
	// TransferCallID is the B-leg the latest transfer of this call created.
	TransferCallID string `json:"transfer_call_id,omitempty"`
	// ParentCallID is, on a transfer B-leg, the call that was transferred.
	ParentCallID string `json:"parent_call_id,omitempty"`
	// WhisperAudio is, on a transfer B-leg, the audio played to it before connecting;
	// WhisperPlayed says it was played (the leg answered).
	WhisperAudio       *Audio `json:"whisper_audio,omitempty"`
	WhisperPlayed      bool   `json:"whisper_played,omitempty"`
	DiversionTreatment string `json:"diversion_treatment,omitempty"`
	DiversionReason    string `json:"diversion_reason,omitempty"`
	// Audio is what POST .../audio is playing to the call, nil when nothing plays.
	Audio *Audio `json:"audio,omitempty"`
}

// Ended reports whether the call reached a final state.
func (c Call) Ended() bool { return c.State == StateCompleted || c.State == StateRejected }

// ChargeableDuration is the billed talk time in seconds: rounded up to whole minutes, as in
// every documented example (2 s and 3 s give 60, 5 min 1 s gives 360) [INF]. It is 0 until
// the call ended and for a call that was never answered.
func (c Call) ChargeableDuration() int {
	if !c.Ended() || c.ActiveTime.IsZero() {
		return 0
	}
	d := c.EndTime.Sub(c.ActiveTime)
	if d <= 0 {
		return 0
	}
	minutes := (d + time.Minute - 1) / time.Minute
	return int(minutes) * 60
}

func (c Call) clone() Call {
	c.SIPHeaders = maps.Clone(c.SIPHeaders)
	if c.WhisperAudio != nil {
		w := *c.WhisperAudio
		c.WhisperAudio = &w
	}
	if c.Audio != nil {
		a := *c.Audio
		c.Audio = &a
	}
	return c
}

// Audio is a played file or spoken sentence: a transfer's whisperAudio or a call's or
// bridge's audio.
type Audio struct {
	FileURL     string `json:"file_url,omitempty"`
	Sentence    string `json:"sentence,omitempty"`
	Gender      string `json:"gender,omitempty"`
	Locale      string `json:"locale,omitempty"`
	Voice       string `json:"voice,omitempty"`
	LoopEnabled bool   `json:"loop_enabled,omitempty"`
	Tag         string `json:"tag,omitempty"`
	Volume      int    `json:"volume,omitempty"`
}

// Bridge is a snapshot of one simulated bridge.
type Bridge struct {
	ID            string    `json:"id"`
	State         string    `json:"state"`
	BridgeAudio   bool      `json:"bridge_audio"`
	CallIDs       []string  `json:"call_ids"`
	CreatedTime   time.Time `json:"created_time"`
	ActivatedTime time.Time `json:"activated_time,omitzero"`
	CompletedTime time.Time `json:"completed_time,omitzero"`
	Audio         *Audio    `json:"audio,omitempty"`
	// API reports a bridge created through the API (POST bridges), as a client's consult
	// makes one; a bridge placed by the control surface (PlaceCallWithAgent's) is false.
	// Ground truth only: the API's own rendering of a bridge has no such field.
	API bool `json:"api,omitempty"`
}

func (b Bridge) clone() Bridge {
	b.CallIDs = append([]string{}, b.CallIDs...)
	if b.Audio != nil {
		a := *b.Audio
		b.Audio = &a
	}
	return b
}

// InboundCall describes a call arriving at the account, placed with Sim.PlaceCall.
type InboundCall struct {
	From string // the caller
	To   string // the account's number that was dialled
	// Agent, when set, is dialled from To as an answered outbound leg and bridged with the
	// inbound call: the "caller talking to agent" start of an attended transfer.
	Agent string
	// CallbackURL receives the inbound call's events (the application's incomingCallUrl) and
	// the agent leg's.
	CallbackURL string
	// Unanswered leaves the inbound call "started", for the application to answer
	// ({"state":"active"}) or reject. It cannot be combined with Agent.
	Unanswered bool
}

// Behaviour is how a dialled number reacts to outbound legs (created calls and transfer
// B-legs). Numbers without one follow Config.DefaultBehaviour, which answers at once unless
// set.
type Behaviour struct {
	Mode  string        // one of the Mode constants; "" means ModeAnswer
	Delay time.Duration // see the Mode constants
}

func modes() []string {
	return []string{ModeAnswer, ModeAfter, ModeNever, ModeBusy, ModeReject, ModeManual}
}

// validMode reports a Mode constant or "" (ModeAnswer).
func validMode(m string) bool { return m == "" || slices.Contains(modes(), m) }

// Operations a Fault can target.
const (
	OpGetCall      = "getCall"    // GET calls/{id} and its events, recordings, transcriptions
	OpListCalls    = "listCalls"  // GET calls
	OpCreateCall   = "createCall" // POST calls
	OpUpdateCall   = "updateCall" // POST calls/{id} other than a transfer
	OpTransfer     = "transfer"   // POST calls/{id} with state "transferring"
	OpCreateBridge = "createBridge"
	OpUpdateBridge = "updateBridge"
	OpGetBridge    = "getBridge"   // GET bridges/{id} and bridges/{id}/calls
	OpListBridges  = "listBridges" // GET bridges
	OpAudio        = "audio"       // POST calls/{id}/audio and bridges/{id}/audio
	OpDTMF         = "dtmf"        // POST calls/{id}/dtmf
	OpAny          = "any"
)

// Fault makes matching API requests misbehave. Faults are tried in the order they were
// injected; the first that matches and is not used up applies.
type Fault struct {
	// Operation is one of the Op constants; OpAny matches every API request.
	Operation string
	// Status, when non-zero, is the HTTP status answered. Code, Category and Message default
	// to what the real API sends for that status and operation (e.g. 503 on a transfer is
	// call-transfer-error, 409 on an update is call-update-conflict).
	Status                  int
	Code, Category, Message string
	// Count is how many requests the fault applies to; 0 means until ClearFaults.
	Count int
	// Latency delays the response (before the request is handled).
	Latency time.Duration
	// Drop closes the connection without any response. It aborts the handler with
	// http.ErrAbortHandler, so it needs a net/http server (an httptest.Server, not a bare
	// ResponseRecorder).
	Drop bool
	// Apply handles the request for real (state changes happen) and then answers with the
	// fault or drops the response: a lost reply.
	Apply bool
	// RateLimitReset, with Status 429, sets X-RateLimit-Reset to now+RateLimitReset in epoch
	// milliseconds (default 1s).
	RateLimitReset time.Duration
}

// Request is one API request as the simulator saw it. Credentials are never stored.
type Request struct {
	Method string `json:"method"`
	// Path is relative to the API root ("/users/u-sim/calls"), whatever prefix the handler
	// is mounted under.
	Path  string `json:"path"`
	Query string `json:"query,omitempty"`
	// Body is the request body exactly as received.
	Body   string    `json:"body,omitempty"`
	Status int       `json:"status"` // 0 when the response was dropped
	Time   time.Time `json:"time"`
	// Authorization reports whether an Authorization header was sent.
	Authorization bool `json:"authorization"`
	// Operation is the Op constant the request was classified as ("" for unknown routes).
	Operation string `json:"operation,omitempty"`
	// Location is the Location header answered, if any.
	Location string `json:"location,omitempty"`
	Dropped  bool   `json:"dropped,omitempty"`
	// Fault says which fault met the request, if any: "injected" (InjectFault), or one of
	// the adversarial profile's "read-failure", "read-drop" (ReadFailureRate), "status",
	// "rate-limited", "latency", "drop", "drop-after-apply", "error-after-apply" (FaultRate)
	// and "lost-response" (LostResponseRate).
	Fault string `json:"fault,omitempty"`
}

// Callback is one attempted delivery of a call event.
type Callback struct {
	// URL is the target with any password redacted.
	URL       string          `json:"url"`
	Method    string          `json:"method"`
	CallID    string          `json:"call_id"`
	EventType string          `json:"event_type"`
	Event     json.RawMessage `json:"event"`
	// Fallback reports a retry on the call's fallbackUrl after the callbackUrl failed.
	Fallback bool `json:"fallback,omitempty"`
	// Retry reports a post to the callbackUrl again after every post so far failed
	// (Config.CallbackRetries).
	Retry  bool      `json:"retry,omitempty"`
	Status int       `json:"status,omitempty"` // 0 when no response arrived
	Error  string    `json:"error,omitempty"`
	Time   time.Time `json:"time"`
}

// Delivered reports a 2xx answer.
func (c Callback) Delivered() bool { return c.Status >= 200 && c.Status < 300 }
