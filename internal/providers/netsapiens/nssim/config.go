package nssim

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Values of Config.TermInfoField.
const (
	// TermInfoCall renders the term leg state as "call-term-info", the name real servers and
	// the vendor guide use.
	TermInfoCall = "call-term-info"
	// TermInfoSpec renders it as "term-orig-info", the (misspelt) name in the official schema.
	TermInfoSpec = "term-orig-info"
	// TermInfoBoth renders both names, so clients written against either keep working.
	TermInfoBoth = "both"
)

// Values of Config.TransferWithTermUser.
const (
	// TermUserIgnore accepts the request with 202 and merges nothing: the vendor guide says a
	// call-term-user in an attended transfer "will prevent the attended transfer from
	// completing", so the consult call stays up and the caller stays on hold.
	TermUserIgnore = "ignore"
	// TermUserBlind treats the request as a blind transfer to call-term-user.
	TermUserBlind = "blind"
)

// Values of Config.WrongHostname.
const (
	// HostnameIgnore accepts the request with 202 and does nothing.
	HostnameIgnore = "ignore"
	// HostnameReject answers 400.
	HostnameReject = "reject"
)

// Values of Config.RingingDisconnect.
const (
	// RingingEnds ends a ringing call as it ends an answered one.
	RingingEnds = "ends"
	// RingingIgnored answers 200 and leaves the call ringing.
	RingingIgnored = "ignored"
	// RingingRefused answers NotRingingStatus's counterpart: 409, "reject it instead".
	RingingRefused = "refused"
)

// Values of Config.HostnameMatch.
const (
	// HostnameOfOriginal requires hostname to be the core-server of the call being transferred
	// (the schema: "the hostname where the call currently resides").
	HostnameOfOriginal = "original"
	// HostnameOfDestination requires the core-server of the consultation session.
	HostnameOfDestination = "destination"
	// HostnameOfEither accepts either core-server.
	HostnameOfEither = "either"
)

// Values of Config.UnknownDestination.
const (
	// DestinationIgnore accepts the request with 202 and does nothing.
	DestinationIgnore = "ignore"
	// DestinationNotFound answers 404.
	DestinationNotFound = "notfound"
)

// Values of Config.HeldSide.
const (
	// HeldRemote marks only the other party's leg "held" (NetSapiens' own Horizon demo treats
	// either leg being "held" as on hold, so both renderings are plausible).
	HeldRemote = "remote"
	// HeldBoth marks both legs "held".
	HeldBoth = "both"
)

// Values of Config.ExternalNumbers.
const (
	// NumbersPSTN renders a leg to an external number the way the spec's ActiveCall example
	// renders its PSTN leg [C-doc]: no user, domain "" on the orig side and "*" on the term
	// side, the number in the leg's URI (sip:<number>@<gateway>) and, for the party a
	// CallRequest dialled, in call-dialed-number.
	NumbersPSTN = "pstn"
	// NumbersAsUsers renders an external number as if it were a user of the domain: the
	// number as call-*-user, the requester's domain, sip:<number>@<domain> as URI.
	NumbersAsUsers = "user"
)

// Values of Config.SubscriptionPostURL.
const (
	// PostURLVerbatim: reads answer a subscription's post-url as it was written.
	PostURLVerbatim = "verbatim"
	// PostURLCanonical: reads answer it normalised (scheme and host in lower case, a default
	// port dropped, the path ending with a slash).
	PostURLCanonical = "canonical"
)

// Values of Config.JoinKeeps.
const (
	// JoinKeepsCaller: an attended transfer keeps the session of the call being transferred
	// (its call-session-id and the caller's leg); the consulted party's leg, with its
	// Call-ID, takes the place of the transferring user's leg, and the consultation session
	// ends with EndTransferred.
	JoinKeepsCaller = "caller"
	// JoinKeepsConsult: it keeps the consultation session instead (its call-session-id,
	// call-by-* fields and dialed number, and the consulted party's leg); the caller's leg,
	// with its Call-ID, takes the place of the transferring user's leg there, the call-id of
	// the CallRequest still addresses it, and the caller's session ends with EndTransferred.
	JoinKeepsConsult = "consult"
)

// Values of Config.ReadOtherLeg.
const (
	// OtherLegFound reads a session by the Call-ID of any of its legs, whoever's path the read
	// is sent under, as actions are resolved (findLocked).
	OtherLegFound = "found"
	// OtherLegNotFound answers 404 to a read under a user's path by a Call-ID that is not that
	// user's own: a PBX that scopes "Read Specific Active Call" to the user's leg.
	OtherLegNotFound = "notfound"
)

// Values of Config.EmptyListing.
const (
	// EmptyListingArray answers a listing without rows with an empty array, [].
	EmptyListingArray = "array"
	// EmptyListingNull answers it with null.
	EmptyListingNull = "null"
	// EmptyListingNone answers it with an empty body.
	EmptyListingNone = "none"
)

// Values of Config.ListParams.
const (
	// ListParamsHonoured pages a listing by its limit and start query parameters: limit (a
	// positive number) is the page size in place of ListPageSize, start (from 0) the first
	// row's offset, as many NetSapiens controllers do [C-code].
	ListParamsHonoured = "honoured"
	// ListParamsStartOnly honours start and ignores limit: every page is ListPageSize long
	// (a controller that keeps its own page size, or caps limit at it).
	ListParamsStartOnly = "start_only"
	// ListParamsLimitOnly honours limit and ignores start: every listing is its first rows,
	// limit of them (ListPageSize without one), however far on it is asked to start.
	ListParamsLimitOnly = "limit_only"
	// ListParamsIgnored ignores both: every listing is its first ListPageSize rows (all of
	// them with ListPageSize 0), whatever is asked.
	ListParamsIgnored = "ignored"
)

// Config tunes the simulator. The zero value is usable: every field has a default, and every
// behaviour the reference notes tag as a guess [G] is a field here so a test can pin the
// variant it depends on.
type Config struct {
	// APIKeys maps an accepted bearer credential to its scope. An empty map accepts any
	// non-empty bearer credential with domain "*".
	APIKeys map[string]KeyScope

	// CoreServers are the hostnames reported as core-server, assigned round-robin to new
	// sessions so clients are exercised against a multi-core cluster. Default
	// {"core1-sim.netsapiens.test", "core2-sim.netsapiens.test"}.
	CoreServers []string

	// ActionDelay is how long an accepted (202) action waits before it takes effect. Actions
	// are applied asynchronously even when it is 0, as on the real server, where a 202 only
	// means the command was accepted.
	ActionDelay time.Duration

	// RingTimeout removes a leg that is still ringing after this long; its session ends with
	// EndNoAnswer. Default 60s, the answer timeout in the spec's SIP trace [C-doc].
	RingTimeout time.Duration

	// AnswerDelay is how long a user whose Behaviour is ModeAfter rings when the Behaviour has
	// no Delay of its own. Default 3s.
	AnswerDelay time.Duration

	// DefaultBehaviour is how the devices of users without a SetBehaviour react when rung.
	// The zero value answers at once; demo mode may prefer {Mode: ModeAfter}, so a person
	// watching sees each leg ring for AnswerDelay.
	DefaultBehaviour Behaviour

	// TermInfoField chooses the JSON name of the term leg state: TermInfoCall, TermInfoSpec
	// or TermInfoBoth (default). The schema's "term-orig-info" is most likely a typo.
	TermInfoField string

	// NumericUsers renders call-orig-user and call-term-user as JSON numbers when they are
	// all digits, as the vendor guide's example does, although the schema says string.
	NumericUsers bool

	// TransferWithTermUser is what an attended transfer body that also carries
	// call-term-user does: TermUserIgnore (default) or TermUserBlind. The real behaviour is
	// unknown [G].
	TransferWithTermUser string

	// WrongHostname is what an attended transfer whose hostname is not the expected
	// core-server does: HostnameIgnore (default, a silent failure) or HostnameReject [G].
	WrongHostname string

	// HostnameMatch is which session's core-server hostname must name: HostnameOfOriginal
	// (default), HostnameOfDestination or HostnameOfEither. The notes could not settle it [I].
	HostnameMatch string

	// UnknownDestination is what an attended transfer to an unknown
	// call-destination-session-id does: DestinationIgnore (default) or DestinationNotFound [G].
	UnknownDestination string

	// HeldSide is which leg hold and unhold flip: HeldRemote (default) or HeldBoth [G].
	HeldSide string

	// ExternalNumbers is how a leg to an external number (a party of ten or more digits, or
	// "+" and digits: a user part "18587645200" or "+18587645200") is rendered: NumbersPSTN
	// (default, as the spec's example of a CallRequest to such a number shows [C-doc]) or
	// NumbersAsUsers. Either way SetBehaviour and Answer name the number as the user.
	ExternalNumbers string

	// JoinHidesCallBy has the session an attended transfer kept under JoinKeepsConsult show no
	// call-by-* fields from then on, while the CallRequest's call-id still addresses it (reads,
	// DELETE). Whether they survive the merge is undocumented [G]; default false, they do.
	JoinHidesCallBy bool

	// JoinKeeps is which session survives an attended transfer: JoinKeepsCaller (default)
	// or JoinKeepsConsult. Which session and Call-IDs survive is undocumented [G].
	JoinKeeps string

	// HeldInfo is the value a held leg shows in call-orig-info and call-term-info: "held"
	// (default, InfoHeld, as NetSapiens' own Horizon demo reads it [C-code]) or any other
	// word. The value set of these fields is undocumented beyond active, alerting and held
	// [G]: another word is how a PBX whose hold a client does not recognise looks. It
	// changes the API's rendering only; Truth and the Go records say InfoHeld.
	HeldInfo string

	// RingingDisconnect is what DELETE .../calls/{call_id} does to a call that is still
	// ringing: RingingEnds (default) ends it, RingingIgnored answers 200 and leaves it
	// ringing, RingingRefused answers 409. The docs give DELETE for "an active call" and
	// DELETE .../reject for "a 'ringing' call prior to any answer event" [C-doc]; what DELETE
	// does to a ringing call is undocumented [G].
	RingingDisconnect string

	// ReadOtherLeg is what GET .../users/{user}/calls/{callid} answers when {callid} is the
	// other party's leg of a call the user is on (the caller's Call-ID read under the agent's
	// user): OtherLegFound (default) reads the call, OtherLegNotFound answers 404. What is
	// known: the endpoint reads "a specific active call" [C-doc]; the call-id of a CallRequest
	// lets its requester "read back the call later" [C-doc], which is the requester's own
	// leg, and stays the user's own here either way; the guide sends the transfer action to
	// the caller's call-orig-call-id under the agent's user [C-doc], so actions reach the
	// other leg (they do here either way). Whether a read resolves another party's leg under
	// a user's path is undocumented [G]: on a PBX that scopes it, that 404 says nothing
	// about the call.
	ReadOtherLeg string

	// ListPageSize is how many rows a listing of calls (GET .../calls, domain or user), or of
	// subscriptions (GET /subscriptions), holds when the request names no limit: a PBX that
	// pages its listings by default. Whether the controllers do, and with what page size, is
	// undocumented [G]. Default 0: no paging, every row in one answer. Counts are never paged.
	ListPageSize int

	// ListParams is which of a listing's limit and start query parameters are honoured (the
	// calls' and the subscriptions' alike):
	// ListParamsHonoured (default), ListParamsStartOnly, ListParamsLimitOnly or
	// ListParamsIgnored. The notes say
	// many controllers honour them [C-code]; whether the calls controller does is [G].
	ListParams string

	// EmptyListing is how a listing of calls without rows (an idle domain or user, a page
	// past the end) is answered: EmptyListingArray (default, []), EmptyListingNull or
	// EmptyListingNone (a 200 with no body). The notes infer [] [I]; a controller that
	// answers null or nothing for no rows is [G].
	EmptyListing string

	// StrictSynchronous makes "synchronous" required in a CallRequest, as the schema says.
	// By default it is optional and means "no", because the real server may default it [G].
	StrictSynchronous bool

	// NotRingingStatus is the status of answer or reject on a call that is not ringing.
	// Default 409 [G].
	NotRingingStatus int

	// DuplicateCallIDStatus is the status of a CallRequest whose call-id belongs to a live
	// call. Default 409 [G].
	DuplicateCallIDStatus int

	// HistoryLimit bounds the recorded requests and ended sessions, oldest dropped first, so
	// a long-running demo or load test does not grow without bound. 0 keeps everything.
	HistoryLimit int

	// Seed seeds the random part of generated ids, for reproducible demos, and (as a separate
	// stream, so ids do not depend on it) the random choices of Chaos. 0 picks a random seed.
	Seed uint64

	// Now is the clock for timestamps and ids. Default time.Now. Timers always use real time.
	Now func() time.Time

	// SubscriptionLag is the tick on which event subscriptions are posted what changed: the
	// server polls its database about every 3 s [3rd], so posts lag by up to that. Default 3s.
	SubscriptionLag time.Duration

	// SubscriptionWriteDelay is how long a subscription write (a create, an update, a delete)
	// waits, once answered, before it takes effect: PUT and DELETE answer 202 [C-doc], accepted
	// and applied when the PBX gets to it, as its call actions are, and a create may be too
	// [G]. Meanwhile reads, listings and posts show the subscription as it was (a create's
	// subscription not at all: its id reads 404, and a matching create is not refused for it);
	// writes are applied in the order they were answered, and one whose subscription is gone
	// by then (deleted, expired) or, for a create, matched by another by then, does nothing.
	// Requests are checked (400, 404, 409) when they arrive. Default 0: applied at once.
	// ApplySubscriptionWrites applies every waiting write now.
	SubscriptionWriteDelay time.Duration

	// SubscriptionExpiryMinutes stores a subscription's expiry to the minute, its seconds
	// dropped, as a PBX keeping datetimes without seconds would. The PBX stores the expiry as
	// written [C-code]; this is for tests of clients that must be right on either. Default
	// false: kept to the second.
	SubscriptionExpiryMinutes bool

	// SubscriptionNames chooses the names of posted objects: NamesLegacy (default, as real
	// captures show) or NamesHyphenated.
	SubscriptionNames string

	// SubscriptionShape chooses how a tick's changes are posted: ShapeArray (default, one
	// array per subscription, as the guide says and a capture shows) or ShapeObject (one post
	// per changed session, its object alone, as a receiver written for call_origid posts
	// documents them [C-code]).
	SubscriptionShape string

	// SubscriptionZone is how far east of UTC the zone is in which a subscription's expiry,
	// written "YYYY-MM-DD HH:MM:SS" with no zone, is read (and in which reads render it, with
	// its offset). Reads answer ISO-8601 with an offset [C-code]; the zone of a write is
	// undocumented [G]. Default 0, UTC; from -12 h to +14 h, as zones go.
	SubscriptionZone time.Duration

	// SubscriptionMatchIgnoresPostURL has a create answer 409 for a subscription of the same
	// model, domain and user whatever its post-url. Whether the "matching set of parameters"
	// the 409 speaks of includes the post-url is undocumented [G]; default false, it does.
	SubscriptionMatchIgnoresPostURL bool

	// SubscriptionPostURL chooses how reads (the create's answer, the listing, a read by id)
	// render a subscription's post-url: PostURLVerbatim (default, as written) or
	// PostURLCanonical (scheme and host in lower case, a default port dropped, the path ending
	// with a slash), as a PBX that normalises URLs when it stores them would. Whether a read
	// answers the post-url as written is undocumented [G]; posts go to it as written either
	// way.
	SubscriptionPostURL string

	// SubscriptionClient sends the posts; default http.DefaultClient.
	SubscriptionClient *http.Client

	// SubscriptionChaos makes posts arrive twice or in reverse order, which nothing
	// documented rules out [G].
	SubscriptionChaos SubscriptionChaos

	// Chaos makes the PBX less cooperative (late and reordered actions, late listings,
	// duplicate call-ids, failing reads, lost responses, random faults); its fields are
	// guesses about real PBX behaviour [G], all off by default. The random draws come from a
	// stream seeded by Seed. Sim.SetChaos changes it at run time.
	Chaos
}

// KeyScope is what a credential may do.
type KeyScope struct {
	// Domain is the only domain the key may address; "*" means every domain.
	Domain string
	// User, when set, is what "~" resolves to in {user}, and the only user the key may
	// address (a Basic User key). Domain keys leave it empty.
	User string
	// ReadOnly keys get 403 on anything but GET [C-code].
	ReadOnly bool
}

func (c Config) withDefaults() Config {
	if len(c.CoreServers) == 0 {
		c.CoreServers = []string{"core1-sim.netsapiens.test", "core2-sim.netsapiens.test"}
	} else {
		c.CoreServers = append([]string(nil), c.CoreServers...)
	}
	keys := make(map[string]KeyScope, len(c.APIKeys))
	for k, v := range c.APIKeys {
		keys[k] = v
	}
	c.APIKeys = keys
	if c.RingTimeout == 0 {
		c.RingTimeout = 60 * time.Second
	}
	if c.AnswerDelay == 0 {
		c.AnswerDelay = 3 * time.Second
	}
	if c.TermInfoField == "" {
		c.TermInfoField = TermInfoBoth
	}
	if c.TransferWithTermUser == "" {
		c.TransferWithTermUser = TermUserIgnore
	}
	if c.WrongHostname == "" {
		c.WrongHostname = HostnameIgnore
	}
	if c.HostnameMatch == "" {
		c.HostnameMatch = HostnameOfOriginal
	}
	if c.UnknownDestination == "" {
		c.UnknownDestination = DestinationIgnore
	}
	if c.HeldSide == "" {
		c.HeldSide = HeldRemote
	}
	if c.ExternalNumbers == "" {
		c.ExternalNumbers = NumbersPSTN
	}
	if c.JoinKeeps == "" {
		c.JoinKeeps = JoinKeepsCaller
	}
	if c.HeldInfo == "" {
		c.HeldInfo = InfoHeld
	}
	if c.RingingDisconnect == "" {
		c.RingingDisconnect = RingingEnds
	}
	if c.ReadOtherLeg == "" {
		c.ReadOtherLeg = OtherLegFound
	}
	if c.ListParams == "" {
		c.ListParams = ListParamsHonoured
	}
	if c.EmptyListing == "" {
		c.EmptyListing = EmptyListingArray
	}
	if c.NotRingingStatus == 0 {
		c.NotRingingStatus = 409
	}
	if c.DuplicateCallIDStatus == 0 {
		c.DuplicateCallIDStatus = 409
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SubscriptionNames == "" {
		c.SubscriptionNames = NamesLegacy
	}
	if c.SubscriptionShape == "" {
		c.SubscriptionShape = ShapeArray
	}
	if c.SubscriptionPostURL == "" {
		c.SubscriptionPostURL = PostURLVerbatim
	}
	if c.SubscriptionLag == 0 {
		c.SubscriptionLag = 3 * time.Second
	}
	c.Chaos = c.Chaos.withDefaults()
	return c
}

// SubscriptionChaos disturbs subscription posts.
type SubscriptionChaos struct {
	// Duplicate posts every array twice.
	Duplicate bool
	// Reorder reverses the objects of each array and the order of a tick's posts.
	Reorder bool
}

// Validate reports every field that holds a value the simulator does not know. Empty values
// are valid: they select the defaults.
func (c Config) Validate() error {
	var errs []error
	if !validMode(c.DefaultBehaviour.Mode) {
		errs = append(errs, fmt.Errorf("nssim: DefaultBehaviour.Mode %q is not a Behaviour mode", c.DefaultBehaviour.Mode))
	}
	if c.DefaultBehaviour.Delay < 0 {
		errs = append(errs, fmt.Errorf("nssim: DefaultBehaviour.Delay %v is negative", c.DefaultBehaviour.Delay))
	}
	errs = append(errs, c.guesses().check(false)...)
	if c.SubscriptionZone < -12*time.Hour || c.SubscriptionZone > 14*time.Hour {
		errs = append(errs, fmt.Errorf("nssim: SubscriptionZone %v is no zone's offset: -12h to +14h", c.SubscriptionZone))
	}
	if c.SubscriptionLag < 0 {
		errs = append(errs, fmt.Errorf("nssim: SubscriptionLag %v is negative", c.SubscriptionLag))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ActionDelay", c.ActionDelay}, {"RingTimeout", c.RingTimeout}, {"AnswerDelay", c.AnswerDelay},
		{"SubscriptionWriteDelay", c.SubscriptionWriteDelay}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("nssim: %s %v is negative", d.name, d.v))
		}
	}
	if c.HistoryLimit < 0 {
		errs = append(errs, fmt.Errorf("nssim: HistoryLimit %d is negative", c.HistoryLimit))
	}
	for _, h := range c.CoreServers {
		if h == "" {
			errs = append(errs, errors.New("nssim: CoreServers holds an empty hostname"))
			break
		}
	}
	for k, v := range c.APIKeys {
		if k == "" {
			errs = append(errs, errors.New("nssim: APIKeys holds an empty credential"))
		}
		if v.Domain == "" {
			// The key itself must never reach an error message.
			errs = append(errs, errors.New("nssim: an APIKeys entry has an empty Domain (use \"*\" for all)"))
		}
	}
	if err := c.Chaos.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
