package bandwidth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// This file holds the wire types and the small operations both modes
// share.

// Call states (calls.md).
const (
	stateStarted      = "started"
	stateActive       = "active"
	stateTransferring = "transferring"
	stateCompleted    = "completed"
	stateRejected     = "rejected"
)

// apiCall is the part of the v1 Call object transferd reads. Unknown
// fields are ignored; states are compared case-insensitively.
type apiCall struct {
	ID          string     `json:"id"`
	Direction   string     `json:"direction"`
	From        string     `json:"from"`
	To          string     `json:"to"`
	State       flexString `json:"state"`
	StartTime   string     `json:"startTime"`
	ActiveTime  string     `json:"activeTime"`
	EndTime     string     `json:"endTime"`
	BridgeID    string     `json:"bridgeId"`
	Bridge      string     `json:"bridge"` // the bridge's URL
	CallbackURL string     `json:"callbackUrl"`
	Tag         string     `json:"tag"`
	TransferTo  string     `json:"transferTo"`
}

func (c *apiCall) state() string { return strings.ToLower(strings.TrimSpace(string(c.State))) }

// live: the call carries audio (answered, or being transferred).
func (c *apiCall) live() bool { s := c.state(); return s == stateActive || s == stateTransferring }

func (c *apiCall) ended() bool { s := c.state(); return s == stateCompleted || s == stateRejected }

// bridgeID is the bridge the call is in; older objects carry only the
// bridge's URL.
func (c *apiCall) bridgeID() string {
	if c.BridgeID != "" {
		return c.BridgeID
	}
	if c.Bridge != "" {
		id, _ := locationID(c.Bridge)
		return id
	}
	return ""
}

// outbound reports an outbound call. The notes give direction as "in"
// or "out" and no case; ownNumber folds it, and so do the searches for a
// transfer's legs: compared exactly, a platform writing "OUT" had every
// leg of ours taken for someone else's (an attended consult whose create
// answer was lost never found, and its leg left ringing).
func (c *apiCall) outbound() bool { return strings.EqualFold(strings.TrimSpace(c.Direction), "out") }

// ownNumber is the account's number on the call: an inbound call's "to"
// (the number the caller dialled), an outbound call's "from".
func (c *apiCall) ownNumber() string {
	if c.outbound() {
		return c.From
	}
	return c.To
}

func (c *apiCall) started() (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, c.StartTime)
	return t, err == nil
}

// apiBridge is the v1 Bridge object.
type apiBridge struct {
	ID          string   `json:"id"`
	State       string   `json:"state"`
	BridgeAudio flexBool `json:"bridgeAudio"`
	CallIDs     []string `json:"callIds"`
}

func (b *apiBridge) has(id string) bool {
	for _, c := range b.CallIDs {
		if c == id {
			return true
		}
	}
	return false
}

// apiEvent is one entry of GET calls/{id}/events.
type apiEvent struct {
	Name flexString `json:"name"`
	Data flexString `json:"data"`
}

// audio is the page's "Audio Parameters".
type audio struct {
	Sentence string `json:"sentence,omitempty"`
	FileURL  string `json:"fileUrl,omitempty"`
	Gender   string `json:"gender,omitempty"`
	Locale   string `json:"locale,omitempty"`
	Voice    string `json:"voice,omitempty"`
}

// transferBody is the page's request. Unset options are omitted; a set
// recordingEnabled is sent even when false.
type transferBody struct {
	State               string `json:"state"`
	TransferTo          string `json:"transferTo"`
	TransferCallerID    string `json:"transferCallerId,omitempty"`
	WhisperAudio        *audio `json:"whisperAudio,omitempty"`
	CallbackURL         string `json:"callbackUrl,omitempty"`
	RecordingEnabled    *bool  `json:"recordingEnabled,omitempty"`
	RecordingFileFormat string `json:"recordingFileFormat,omitempty"`
	DiversionTreatment  string `json:"diversionTreatment,omitempty"`
	DiversionReason     string `json:"diversionReason,omitempty"`
}

// createCallBody is POST /calls (postCalls.md).
type createCallBody struct {
	From        string `json:"from"`
	To          string `json:"to"`
	BridgeID    string `json:"bridgeId"`
	CallTimeout int    `json:"callTimeout"`
	Tag         string `json:"tag"`
	CallbackURL string `json:"callbackUrl,omitempty"`
	// FallbackURL is where Catapult posts an event once more when its
	// post to callbackUrl failed (notes §9: the one retry documented).
	// transferd answers a callback 503 while what it told is not saved
	// with its transfer (api.NoteKeeper), and gives the same URL: a
	// balancer may send the second post to another replica.
	FallbackURL         string `json:"fallbackUrl,omitempty"`
	RecordingEnabled    *bool  `json:"recordingEnabled,omitempty"`
	RecordingFileFormat string `json:"recordingFileFormat,omitempty"`
}

// bridgeBody creates or updates a bridge. callIds is the full new
// membership: omitzero leaves out a nil list but sends an empty one as
// [], which empties the bridge; build lists with members.
type bridgeBody struct {
	BridgeAudio *bool    `json:"bridgeAudio,omitempty"`
	CallIDs     []string `json:"callIds,omitzero"`
}

// members is a bridge membership that is never nil, so that it is sent
// even when empty.
func members(ids ...string) []string { return append([]string{}, ids...) }

func audioOn(on bool) *bool { return &on }

type stateBody struct {
	State string `json:"state"`
}

// getCall reads a call. A state transferd does not know (the C# SDK names
// an "error" state no document mentions) says nothing of whether the call
// rings, carries audio or has ended: the reading is an unknown outcome, not
// an end, which would have the engine give up on a leg that may still
// ring or carry the caller.
func (c *Client) getCall(ctx context.Context, id string) (*apiCall, error) {
	var out apiCall
	if err := c.do(ctx, request{op: "get_call", method: http.MethodGet, path: "/calls/" + seg(id), safe: true}, &out); err != nil {
		return nil, err
	}
	switch out.state() {
	case stateStarted, stateActive, stateTransferring, stateCompleted, stateRejected:
	default:
		return nil, orchestrator.E("bandwidth.get_call", orchestrator.KindProviderUnavailable,
			fmt.Errorf("call %s reads state %q, which transferd does not know: its state is unknown", id, out.state()))
	}
	return &out, nil
}

// getKnownCall reads a call transferd has read before (the caller's,
// which Locate read): Catapult keeps an ended call readable, in state
// completed or rejected, so a "not found" for it is the platform not
// showing it now (a read served before the call's record, a not-found
// code used loosely: which of the two comes when is a guess), not the
// call gone. Taken for gone, it closed a transfer whose caller was still
// up with a B-leg left ringing. It is an unknown reading instead: the
// engine reads again, and past its verify timeout the outcome says it
// could not be verified.
func (c *Client) getKnownCall(ctx context.Context, id string) (*apiCall, error) {
	call, err := c.getCall(ctx, id)
	if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
		return nil, unreadable(id, err)
	}
	return call, err
}

// getConsultLeg reads a transfer's consult leg: nil, and no error, when
// it is not found and no reading has shown it yet (a leg created moments
// ago may not be readable yet: absent, which the engine judges by its
// visibility window), or when a reading has shown it ended
// (Seen.ConsultEnded: ended still, which the caller reports); an unknown
// reading when it is not found after one has shown it up (getKnownCall:
// reported absent, the engine would take it for ended and hang up a live
// target).
//
// A leg shown ended and never readable is a failed leg the platform never
// indexed (bwsim VanishFailedLegs), whose end only its hangup callback
// told: taken for unknown, no later reading could ever show the consult
// clear, and a process restarted after the callback (which keeps causes
// in memory only) left the outcome unverified for good.
func (c *Client) getConsultLeg(ctx context.Context, t *orchestrator.Transfer, id string) (*apiCall, error) {
	if t.Seen.Consult && !t.Seen.ConsultEnded {
		return c.getKnownCall(ctx, id)
	}
	call, err := c.getCall(ctx, id)
	if orchestrator.KindOf(err) == orchestrator.KindCallNotFound {
		return nil, nil
	}
	return call, err
}

// unreadable is a "not found" for a call known to exist (getKnownCall).
func unreadable(id string, err error) error {
	return orchestrator.E("bandwidth.get_call", orchestrator.KindProviderUnavailable,
		fmt.Errorf("call %s, read before, is not found now: its state is unknown: %w", id, err))
}

func (c *Client) getBridge(ctx context.Context, id string) (*apiBridge, error) {
	var out apiBridge
	if err := c.do(ctx, request{op: "get_bridge", method: http.MethodGet, path: "/bridges/" + seg(id), safe: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Paging of callsTo: pages of listSize calls, at most listPages of them.
const (
	listSize  = 100
	listPages = 10
)

// callsTo lists the calls to a number (calls.md filters) that started no
// earlier than floor, newest first, and maybe some older ones. The listing
// is paged, and it keeps ended calls: to a busy number (a queue's), the
// first page may hold only calls made after the one looked for, which
// was then taken for not there (a consult whose answer was lost never
// found, given up and left up). Pages are read until one is not full or
// reaches a call started before floor (or whose start time does not
// parse: nothing tells how far to go, and a page costs a request of a
// rate-limited resource); past listPages the listing is an unknown
// reading, not a shorter one.
func (c *Client) callsTo(ctx context.Context, to string, floor time.Time) ([]apiCall, error) {
	var all []apiCall
	for page := 0; ; page++ {
		var out []apiCall
		q := url.Values{"to": {to}, "sortOrder": {"desc"}, "size": {strconv.Itoa(listSize)}, "page": {strconv.Itoa(page)}}
		if err := c.do(ctx, request{op: "list_calls", method: http.MethodGet, path: "/calls", query: q, safe: true}, &out); err != nil {
			return nil, err
		}
		all = append(all, out...)
		if len(out) < listSize {
			return all, nil
		}
		if st, ok := out[len(out)-1].started(); !ok || st.Before(floor) {
			return all, nil
		}
		if page+1 == listPages {
			return nil, orchestrator.E("bandwidth.list_calls", orchestrator.KindProviderUnavailable,
				fmt.Errorf("more than %d calls to %s since the transfer began: the listing was not read to its end", listPages*listSize, to))
		}
	}
}

func (c *Client) updateBridge(ctx context.Context, op, id string, b bridgeBody) error {
	return c.do(ctx, request{op: op, method: http.MethodPost, path: "/bridges/" + seg(id), body: b, safe: true}, nil)
}

// hangup ends a call whatever its state ({"state":"completed"} cancels a
// ringing outbound call too). A call that already ended is success.
func (c *Client) hangup(ctx context.Context, op, id string) error {
	err := c.do(ctx, request{op: op, method: http.MethodPost, path: "/calls/" + seg(id),
		body: stateBody{State: stateCompleted}, safe: true}, nil)
	switch orchestrator.KindOf(err) {
	case orchestrator.KindCallNotFound, orchestrator.KindCallNotActive:
		return nil // gone already, or ended meanwhile (403 call-invalid-state)
	}
	return err
}

// dialled reports whether the engine sent t's dial (it may have been
// lost on the way, or its answer).
func dialled(t *orchestrator.Transfer) bool { return !t.Sent.Dial.IsZero() }

// endCause returns why a consult leg ended: the failure a callback
// reported, else the hangup (or timeout) in the call's event history
// (GET calls/{id}/events, whose hangup entries carry the cause as data),
// the events merged in order as mergeCause says, and with a plain end a
// callback reported. It is "" when neither tells, and the callbacks' cause
// with the read's error when the history could not be read (a failure, or
// "not found" for a call just read), or shows no end yet of the call read
// ended (historyLags): then why the leg ended is unknown, not untold.
//
// A plain end a callback told (ORIGINATOR_CANCEL, NORMAL_CLEARING) is not
// the whole story: the timeout event before it may be lost, or come after
// it (callbacks may be missing or reordered), and a platform that cancels
// the leg it gave up on says ORIGINATOR_CANCEL (bwsim TimeoutHangupCause).
// Taken alone, it made a target who never answered a caller who hung up
// (announced: the platform ends the caller's call with the failed leg).
// The history is read once for such a leg.
func (c *Client) endCause(ctx context.Context, t *orchestrator.Transfer, callID string) (string, error) {
	told := c.causes.get(t.ID, callID)
	if told != "" && (!plainEnd(told) || c.causes.get(t.ID, callID+historyRead) != "") {
		return told, nil
	}
	var events []apiEvent
	if err := c.do(ctx, request{op: "call_events", method: http.MethodGet, path: "/calls/" + seg(callID) + "/events", safe: true}, &events); err != nil {
		if orchestrator.KindOf(err) == orchestrator.KindProviderRejected {
			// Refused for good (no such resource on this platform, a
			// request it does not take): the history tells nothing.
			return told, nil
		}
		return told, err
	}
	cause, shown := "", false
	for _, ev := range events {
		switch strings.ToLower(string(ev.Name)) {
		case "hangup":
			shown = true
			if d := strings.TrimSpace(string(ev.Data)); d != "" {
				cause = mergeCause(cause, strings.ToUpper(d))
			}
		case "timeout":
			shown = true
			cause = mergeCause(cause, causeNoAnswer)
		}
	}
	if !shown && c.historyLags(t.ID, callID) {
		// The call reads ended (endCause is asked only then) and its
		// history shows no end: it is not up to date yet (a history
		// served from an index that lags the call object). Taken for one
		// that says nothing, it had a busy target's leg, ended with the
		// caller's call by the platform, read as the caller hanging up.
		return told, orchestrator.E("bandwidth.call_events", orchestrator.KindProviderUnavailable,
			fmt.Errorf("call %s reads ended and its %w: why it ended is unknown", callID, errHistoryLags))
	}
	switch {
	case cause == "":
		cause = told
	case told != "":
		cause = mergeCause(told, cause)
	}
	if cause != "" {
		c.causes.merge(t.ID, callID, cause)
		c.causes.put(t.ID, callID+historyRead, "1")
	}
	return cause, nil
}

// historyRead marks, beside a call id in the causeBook, a call whose
// event history endCause has read.
const historyRead = "#history"

// historyLag keeps, beside a call id in the causeBook, when this process
// first read the call's history without its end (historyLags).
const historyLag = "#lag"

// errHistoryLags is endCause's error for a history not up to date with
// its call (historyLags): unlike one that could not be read, it lasts a
// visibility window at most, and the reading waits it out whatever the
// caller's call shows (observeAnnounced).
var errHistoryLags = errors.New("event history shows no end yet")

// historyLags reports whether a history that shows no end of a call read
// ended is to be taken for one not up to date: for the visibility window
// from when this process first read it so. Past it, a platform whose
// histories never show an end (hangup entries are documented, but not
// that every platform writes them) is taken at its word, so that a leg's
// end is judged once the window has passed, as before.
func (c *Client) historyLags(transferID, callID string) bool {
	k := callID + historyLag
	first, err := time.Parse(time.RFC3339Nano, c.causes.get(transferID, k))
	if err != nil {
		first = c.now()
		c.causes.put(transferID, k, first.Format(time.RFC3339Nano))
	}
	return c.young(first)
}

// mergeCause returns the cause of a leg that reported old and then next.
// A failure (a timeout's NO_ANSWER, USER_BUSY, NORMAL_TEMPORARY_FAILURE...)
// wins over a later cause that is not one: after a timeout the platform
// may hang the leg up with a cause of its own (ORIGINATOR_CANCEL, say;
// notes §12.3 "probably NO_ANSWER?"), which says how it ended, not why.
// Otherwise the later cause wins.
func mergeCause(old, next string) string {
	if old != "" && !plainEnd(old) && plainEnd(next) {
		return old
	}
	return next
}

// plainEnd reports a cause that is no failure: a call hung up, or
// cancelled by its originator.
func plainEnd(cause string) bool {
	return cause == causeNormalClearing || cause == causeOriginatorCancel
}

// Hangup causes (apiCallbacks/hangup.md).
const (
	causeNormalClearing   = "NORMAL_CLEARING"
	causeUserBusy         = "USER_BUSY"
	causeCallRejected     = "CALL_REJECTED"
	causeNoAnswer         = "NO_ANSWER"
	causeOriginatorCancel = "ORIGINATOR_CANCEL"
	causeUnallocated      = "UNALLOCATED_NUMBER"
)

// consultEnded fills obs for a consult leg that ended, with the reason
// its cause gives.
func consultEnded(obs *orchestrator.Observation, call *apiCall, cause string) {
	obs.Consult = orchestrator.ConsultEnded
	answered := call != nil && call.ActiveTime != ""
	obs.ConsultWasAnswered = answered
	switch cause {
	case causeUserBusy:
		obs.EndReason = orchestrator.ReasonBusy
	case causeCallRejected, causeUnallocated:
		obs.EndReason = orchestrator.ReasonRejected
	case causeNoAnswer:
		obs.EndReason = orchestrator.ReasonNoAnswer
	case causeNormalClearing:
		if answered {
			obs.EndReason = orchestrator.ReasonTargetHungUp
		}
	default:
		if failedUnanswered(call, cause) {
			// A failure transferd does not name (NORMAL_TEMPORARY_FAILURE,
			// a congestion, "others = internal error"): the leg failed,
			// which the engine must not read as an end with no reason (a
			// caller's call ended with it would be the caller hanging up).
			obs.EndReason = orchestrator.ReasonConsultFailed
		}
	}
	switch {
	case cause != "":
		obs.Detail = "the consult call ended (" + cause + ")"
	case call == nil:
		obs.Detail = "the consult call no longer exists"
	default:
		obs.Detail = "the consult call ended; Bandwidth did not say why"
	}
}

// failedUnanswered reports a leg read ended before it was answered with
// a cause that is neither a plain end nor one of the failures transferd
// names: it failed (a SIP INVITE refused, a network failure), as opposed
// to a cancel (ours, or the caller's hang-up).
func failedUnanswered(call *apiCall, cause string) bool {
	return call != nil && call.ActiveTime == "" && cause != "" && !plainEnd(cause)
}

// targetFailed reports a cause that means the target never took the
// call, as opposed to a cancel (ours, or the caller's hang-up).
func targetFailed(cause string) bool {
	switch cause {
	case causeUserBusy, causeCallRejected, causeNoAnswer, causeUnallocated:
		return true
	}
	return false
}
