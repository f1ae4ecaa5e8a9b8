package bwsim

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// hangupCauseRE is the shape of the documented hangup causes (NORMAL_CLEARING, USER_BUSY...).
var hangupCauseRE = regexp.MustCompile(`^[A-Z][A-Z_]{0,63}$`)

// Values of Config.TransferFailure.
const (
	// TransferFailureHangup hangs the A-leg up when the transfer's B-leg fails (busy, no
	// answer, rejected, cancelled). The v1 BXML <Transfer> docs say "an attempt to transfer to
	// an invalid destination completes the call"; nothing documents the REST transfer, so this
	// is a [GUESS] and the default.
	TransferFailureHangup = "hangup"
	// TransferFailureRestore puts the A-leg back to "active", as if the transfer never
	// happened.
	TransferFailureRestore = "restore"
)

// Values of Config.TransferLegCallback.
const (
	// TransferLegCallbackALeg sends the events of a transfer B-leg created without a
	// callbackUrl to the A-leg's callbackUrl. The notes say "probably the A-leg's URL or the
	// application's URL" ([GUESS]); for an inbound A-leg the two are the same, so this is the
	// default.
	TransferLegCallbackALeg = "a-leg"
	// TransferLegCallbackNone sends them nowhere.
	TransferLegCallbackNone = "none"
)

// Values of Config.TransferLegFrom.
const (
	// TransferLegFromAsGiven shows transferCallerId as given, and the A-leg's from when it
	// was omitted: "Omitting transferCallerId will pass along the number of the original
	// incoming call" (v1 BXML docs), applied to the REST transfer [INF].
	TransferLegFromAsGiven = "as-given"
	// TransferLegFromCalledNumber shows, when transferCallerId was omitted, the number the
	// A-leg called (an owned number): the "number of the original incoming call" read the
	// other way.
	TransferLegFromCalledNumber = "called-number"
	// TransferLegFromAnonymous shows a "private" transferCallerId as "anonymous", as
	// carriers often present a withheld number, and the rest as TransferLegFromAsGiven.
	TransferLegFromAnonymous = "anonymous"
)

// Values of Config.ALegTransferFields.
const (
	// ALegTransferFieldsAlways renders transferTo and transferCallerId on a transferred call
	// from its transfer on, whatever its state (the default).
	ALegTransferFieldsAlways = "always"
	// ALegTransferFieldsWhileTransferring renders them only while the call reads
	// "transferring".
	ALegTransferFieldsWhileTransferring = "while-transferring"
	// ALegTransferFieldsNever never renders them.
	ALegTransferFieldsNever = "never"
)

// TimeoutHangupNone is the Config.TimeoutHangupCause that sends no hangup event after a
// timeout: the call ends with the timeout event alone.
const TimeoutHangupNone = "none"

// Defaults of Config.
const (
	DefaultUserID            = "u-sim"
	DefaultRingTimeout       = 60 * time.Second // postCalls.md: callTimeout default 60 s
	DefaultAnswerDelay       = 2 * time.Second
	DefaultForbiddenCategory = "forbidden" // [GUESS] no doc shows a 403 FORBIDDEN body
	DefaultMaxRecords        = 10000
	defaultCallbackTimeout   = 10 * time.Second // callbackTimeout default and maximum (10000 ms)
	// callbackIdleConns is how many idle connections the default CallbackClient keeps to a
	// host: each call's callbacks go out from a goroutine of their own, so as many may be in
	// flight at once as calls changed. Go's default transport keeps two and closes the rest
	// after each burst: under load, a new connection to the receiver for almost every
	// callback. The provider's documents say nothing of how it sends them; a sender that
	// keeps its connections is the one a receiver's cost should be measured against.
	callbackIdleConns = 256
)

// callbackTransport is the default CallbackClient's transport: Go's default transport but
// for the connections it keeps (callbackIdleConns).
func callbackTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = callbackIdleConns, callbackIdleConns
	return t
}

// Config tunes the simulator. The zero value is usable: every field has a default. Every
// behaviour the reference notes tag [GUESS] or [INF] is a field here, so a test can pin the
// variant it depends on.
type Config struct {
	// UserID is the only {userId} the API serves. Default "u-sim".
	UserID string

	// Token and Secret are the HTTP Basic credentials the API accepts. When both are empty any
	// credentials, or none, are accepted, which suits demo mode and quick experiments.
	Token, Secret string

	// OwnedNumbers are the numbers the account owns: valid "from" of a created call and valid
	// transferCallerId. When empty every E.164 number counts as owned, so a zero Config can
	// place calls; tests that exercise caller-id validation set it.
	OwnedNumbers []string

	// AbsoluteLocation is kept for callers that set it explicitly. Absolute Location headers
	// are the default whatever its value ([INF] from the C# SDK, which reads
	// Location.AbsolutePath and would throw on a relative URI), because a bool's zero value
	// cannot mean "true by default". Set RelativeLocation for the docs' relative form.
	AbsoluteLocation bool
	// RelativeLocation makes Location headers relative ("/v1/users/..."), the form printed in
	// the 2016 docs. Ignored when AbsoluteLocation is true.
	RelativeLocation bool

	// BaseURL is the external base of the API, e.g. "http://127.0.0.1:1234/v1", used for
	// absolute Location headers, the URLs in call objects and the callUri of callbacks. When
	// empty it is derived from each request: scheme, Host and the prefix the handler is
	// mounted under (falling back to "/v1"). See also Sim.SetBaseURL.
	BaseURL string

	// RingTimeout is how long an outbound leg rings before it times out when the request gave
	// no callTimeout; transfer B-legs always use it (the transfer has no callTimeout).
	// Default 60s.
	RingTimeout time.Duration

	// AnswerDelay is the delay of Behaviour "after" when the behaviour sets none. Default 2s.
	AnswerDelay time.Duration

	// DefaultBehaviour is how numbers without their own Behaviour (SetBehaviour) react. The
	// zero value answers at once; demo mode may prefer {Mode: ModeAfter} so people see legs
	// ring.
	DefaultBehaviour Behaviour

	// TransferFailure says what happens to the A-leg when the transfer B-leg fails before it
	// is answered: TransferFailureHangup (default, [GUESS]) or TransferFailureRestore.
	TransferFailure string

	// TransferredALegState is the A-leg's state once the B-leg answered and the two are
	// connected: "transferring" (default; the docs' how-to only says the call reads
	// transferring while it is transferred, [GUESS]) or "active".
	TransferredALegState string

	// ALegTransferFields says when a transferred call's object shows transferTo and
	// transferCallerId: ALegTransferFieldsAlways (default), ALegTransferFieldsWhileTransferring
	// or ALegTransferFieldsNever. The notes say the A-leg "may expose
	// transferTo/transferCallerId" (2016 call properties, the SDKs' structs): whether and when
	// it does is a [GUESS].
	ALegTransferFields string

	// TimeoutHangupCause is the cause of the hangup event that follows the timeout event of
	// an outbound leg nobody answered: default NO_ANSWER; TimeoutHangupNone for no hangup
	// event at all. The notes say "timeout event, then probably hangup (cause NO_ANSWER?)":
	// both the event and its cause are a [GUESS] (known unknown 4). A platform cancelling the
	// leg it gave up on might say ORIGINATOR_CANCEL.
	TimeoutHangupCause string

	// CallbackRetries is how many more times an event is posted to its callbackUrl once
	// every post so far failed (the callbackUrl's, then the fallbackUrl's when the call has
	// one). The notes document the fallbackUrl's one post and no retry beyond it: more is a
	// [GUESS] (known unknown 8); default 0, none; 5 at most. transferd answers a callback 503
	// until what it told is saved, for the platform to post it again. One of the Guesses: the
	// storm draws it.
	CallbackRetries int

	// TransferLegCallback says where the events of a B-leg go when the transfer request had
	// no callbackUrl ([GUESS]): TransferLegCallbackALeg (default) or TransferLegCallbackNone.
	TransferLegCallback string

	// TransferLegFrom says what a transfer B-leg's from shows ([INF]; how "private" is
	// shown is unknown): TransferLegFromAsGiven (default), TransferLegFromCalledNumber or
	// TransferLegFromAnonymous. Polling tells a transfer's B-leg from other calls to the
	// target by it.
	TransferLegFrom string

	// ForbiddenCategory is the error category of the 403 FORBIDDEN group (call-invalid-state,
	// bridge-callIds-overflow, ...). errors.md names the group but no doc shows a body, so it
	// is a [GUESS]. Default "forbidden".
	ForbiddenCategory string

	// CallRateLimit is how many POST /calls are accepted per second (sliding window over
	// Now) before 403 call-rate-limit. 0 means unlimited.
	CallRateLimit int

	// RequestRateLimit is how many other API requests are accepted per second before 429
	// rate-limit-reached with X-RateLimit-Reset in epoch milliseconds. 0 means unlimited.
	RequestRateLimit int

	// MaxRecords caps the request and callback logs; the oldest entries are dropped so load
	// tests run in bounded memory. Default 10000.
	MaxRecords int

	// CallbackClient delivers callbacks. Default: a client with a 10s timeout (the documented
	// callbackTimeout maximum) that keeps an idle connection for each of up to
	// callbackIdleConns callbacks in flight to a host. Never http.DefaultClient.
	CallbackClient *http.Client

	// Now is the clock of timestamps and rate-limit windows. Default time.Now. Ring and
	// answer delays always run on real timers.
	Now func() time.Time

	// The fields below make the simulator adversarial: each is a guess about how a real
	// platform may behave under load or partial failure, off by default, because the
	// cooperative simulator is what most tests want. Adversarial turns them all on;
	// Sim.SetAdversity and the control surface switch them at run time.

	// Seed seeds every random choice of the adversarial behaviours (delays, which requests
	// fail and how), so a run can be replayed: one client sending one request at a time gets
	// the same choices for the same seed. Reset re-seeds.
	Seed uint64

	// ActionDelay and ActionJitter: an accepted action (a call update such as a hang-up
	// {"state":"completed"} or an answer, a bridge update of membership or bridgeAudio) is
	// answered at once but applied after a random delay in [ActionDelay,
	// ActionDelay+ActionJitter], so two actions are sometimes applied out of order. An action
	// that is no longer valid when its turn comes (its call ended meanwhile, a member is in
	// another bridge) is dropped without a word. [GUESS]: a platform that answers before its
	// media servers acted, as Catapult's 200 on an update suggests. Creations (calls,
	// bridges, transfers) still apply at once and return the new id. Both 0: at once.
	ActionDelay, ActionJitter time.Duration

	// ListingDelay and ListingJitter: a call created through the API (POST calls, a transfer's
	// B-leg) is shown by GET calls only after a random delay in [ListingDelay,
	// ListingDelay+ListingJitter] [GUESS: listings served from a lagging read index]. Updates
	// addressed to it work meanwhile: writes go to the authoritative store.
	ListingDelay, ListingJitter time.Duration

	// UnlistedNotFound makes GET calls/{id} (and its events) answer 404 call-not-found for a
	// call that is not listed yet, as if single reads used the same lagging index [GUESS].
	UnlistedNotFound bool

	// ReadFailureRate is the fraction of GET requests that fail while writes keep working
	// [GUESS: a read replica in trouble]: three in four answer 500 or 503, one is dropped
	// without a response. 0 to 1.
	ReadFailureRate float64

	// VanishFailedLegs makes a leg dialled to a busy or rejecting number (ModeBusy,
	// ModeReject) end at once, whatever Behaviour.Delay says, and disappear: no listing or
	// read ever shows it (404), so a poller never sees it [GUESS: a leg refused before the
	// platform indexed it]. Its callbacks are still sent. A transfer whose B-leg vanishes
	// applies TransferFailure to its A-leg at once.
	VanishFailedLegs bool

	// LostResponseRate is the fraction of writes (POST) that are applied and then lose their
	// response: the connection closes without an answer [GUESS: a proxy timing out after
	// the platform acted]. 0 to 1.
	LostResponseRate float64

	// FaultRate is the fraction of API requests that meet a random provider fault, each kind
	// equally likely: 500, 503, 429 with X-RateLimit-Reset, latency up to MaxFaultLatency,
	// a dropped connection before applying, a dropped connection after applying, and a 500
	// after applying. 0.2 is "about 20 % provider faults". 0 to 1.
	FaultRate float64

	// MaxFaultLatency bounds the latency of FaultRate's latency faults. Default 500ms when
	// FaultRate is set.
	MaxFaultLatency time.Duration
}

// Validate reports the first invalid field, so a caller that builds the Config from outside
// input (demo mode) can refuse it before New panics.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, c.guesses().check(false)...)
	if !validMode(c.DefaultBehaviour.Mode) {
		errs = append(errs, fmt.Errorf("DefaultBehaviour.Mode %q: want one of %v", c.DefaultBehaviour.Mode, modes()))
	}
	if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("BaseURL %q: want an absolute URL", c.BaseURL))
		}
	}
	if c.RingTimeout < 0 || c.AnswerDelay < 0 || c.DefaultBehaviour.Delay < 0 || c.CallRateLimit < 0 || c.RequestRateLimit < 0 || c.MaxRecords < 0 {
		errs = append(errs, errors.New("durations and limits must not be negative"))
	}
	if err := c.adversity().validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bwsim: invalid config: %w", err)
	}
	return nil
}

// withDefaults fills every unset field.
func (c Config) withDefaults() Config {
	if c.UserID == "" {
		c.UserID = DefaultUserID
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = DefaultRingTimeout
	}
	if c.AnswerDelay == 0 {
		c.AnswerDelay = DefaultAnswerDelay
	}
	if c.TransferFailure == "" {
		c.TransferFailure = TransferFailureHangup
	}
	if c.TransferredALegState == "" {
		c.TransferredALegState = StateTransferring
	}
	if c.ALegTransferFields == "" {
		c.ALegTransferFields = ALegTransferFieldsAlways
	}
	if c.TimeoutHangupCause == "" {
		c.TimeoutHangupCause = CauseNoAnswer
	}
	if c.TransferLegCallback == "" {
		c.TransferLegCallback = TransferLegCallbackALeg
	}
	if c.TransferLegFrom == "" {
		c.TransferLegFrom = TransferLegFromAsGiven
	}
	if c.ForbiddenCategory == "" {
		c.ForbiddenCategory = DefaultForbiddenCategory
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.CallbackClient == nil {
		c.CallbackClient = &http.Client{Timeout: defaultCallbackTimeout, Transport: callbackTransport()}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	c.OwnedNumbers = append([]string(nil), c.OwnedNumbers...)
	return c
}
