package bandwidth

import (
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/transferd/transferd/internal/orchestrator"
)

// maxCallbackBody bounds a callback body; Catapult events are small.
const maxCallbackBody = 64 << 10

// maxCauses is the least number of transfers whose notes (hangup causes,
// the leg a callback named) are kept in memory (causeBook).
const maxCauses = 4096

var (
	eventTypeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z-]{0,63}$`)
	causeRE     = regexp.MustCompile(`^[A-Za-z_]{1,64}$`)
)

// callbackEvent is the part of a Catapult v1 event (notes §9) transferd
// uses. Other fields (from, to, callUri, time, tag, ...) are ignored.
type callbackEvent struct {
	EventType flexString `json:"eventType"`
	CallID    flexString `json:"callId"`
	Cause     flexString `json:"cause"`
}

// CallbackHandler serves Catapult's call events for the calls transferd
// creates or transfers: POST /{transfer_id} with the event as JSON, or GET
// with it as query parameters (callbackHttpMethod GET). The transfer id is
// the last path segment, so the handler works below any mount point
// (http.StripPrefix or chi's Mount); transferd mounts it at CallbackPath.
//
// A hangup or timeout event's cause is remembered for its call, so that a
// consult that ended says why (busy, rejected, no answer). Then notify
// wakes the transfer, which reads the provider's state at once. An event
// never changes a transfer's state by itself: a forged callback can only
// make transferd read the real state sooner, and at most relabel why a
// leg ended that the provider itself shows ended, and only for the
// transfer and call it names. The leg it names is taken for the
// transfer's only if that call, when it can be read, carries the
// transfer's callbackUrl (searchTransferLeg).
//
// Malformed transfer ids and bodies are answered 400; everything else 200
// at once (Catapult ignores the body of the answer). transferd's own
// server answers only once what the event told is saved with its
// transfer (NoteKept), 503 otherwise: this handler, which has no record
// to wait for, does not.
func (c *Client) CallbackHandler(notify func(transferID string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimSuffix(r.URL.Path, "/")
		id := p[strings.LastIndexByte(p, '/')+1:]
		if _, err := c.ReceiveCallback(r, id); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if notify != nil {
			notify(id)
		}
		w.WriteHeader(http.StatusOK)
	})
}

// ReceiveCallback reads one Catapult event for transfer transferID from r
// (a JSON body on POST, query parameters on GET) and remembers the call it
// names and a hangup or timeout cause; the caller then wakes the
// transfer. A malformed id or event is an error of kind KindInvalid
// naming the field. note is what the event told, for ApplyCallbackNote on
// the replica that drives the transfer when this one does not: the call
// id, then "/" and the cause when the event gave one; "" when it named no
// call.
func (c *Client) ReceiveCallback(r *http.Request, transferID string) (note string, err error) {
	const op = "bandwidth.callback"
	invalid := func(field, msg string) error {
		return &orchestrator.Error{Op: op, Kind: orchestrator.KindInvalid,
			Err: errors.New(field + " " + msg), Fields: map[string]string{field: msg}}
	}
	if !orchestrator.ValidID(transferID) {
		return "", invalid("transfer_id", "is not a transfer id")
	}
	var ev callbackEvent
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		ev = callbackEvent{EventType: flexString(q.Get("eventType")), CallID: flexString(q.Get("callId")),
			Cause: flexString(q.Get("cause"))}
	} else {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxCallbackBody+1))
		if err != nil || len(data) > maxCallbackBody {
			return "", invalid("(body)", "is too large or unreadable")
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return "", invalid("(body)", "is not a JSON object")
		}
	}
	if field, msg := ev.problem(); field != "" {
		return "", invalid(field, msg)
	}
	callID := string(ev.CallID)
	if callID == "" {
		return "", nil
	}
	var cause string
	switch strings.ToLower(string(ev.EventType)) {
	case "hangup":
		cause = strings.ToUpper(string(ev.Cause))
	case "reject":
		// The docs send a rejection as a hangup with CALL_REJECTED; the
		// Java SDK's event enum names a "reject" type too. Read as an
		// event that says nothing, a rejected leg whose hangup callback
		// never came was the caller hanging up (announced: the platform
		// ends the caller's call with the failed transfer).
		// A cause it carries that is a failure says more; a plain end
		// (a hang-up) does not undo the rejection the type says.
		cause = causeCallRejected
		if c := strings.ToUpper(string(ev.Cause)); c != "" && !plainEnd(c) {
			cause = c
		}
	case "timeout":
		// "the call is not answered until the specified timeout"; the
		// hangup that follows may carry a cause of its own, which does not
		// replace this one (mergeCause).
		cause = causeNoAnswer
	}
	c.learn(transferID, callID, cause)
	if cause == "" {
		return callID, nil
	}
	return callID + "/" + cause, nil
}

// ApplyCallbackNote remembers what a callback another replica received
// told (its ReceiveCallback's note), as if the callback had come here. A
// malformed note is an error of kind KindInvalid: it comes from another
// process, perhaps of another version, and is checked as a callback is.
func (c *Client) ApplyCallbackNote(transferID, note string) error {
	callID, cause, withCause := strings.Cut(note, "/")
	if !orchestrator.ValidID(transferID) || !callIDRE.MatchString(callID) ||
		(withCause && (!causeRE.MatchString(cause) || cause != strings.ToUpper(cause))) {
		return &orchestrator.Error{Op: "bandwidth.callback note", Kind: orchestrator.KindInvalid,
			Err: fmt.Errorf("malformed callback note %q for %q", note, transferID)}
	}
	c.learn(transferID, callID, cause)
	return nil
}

// learn remembers that a callback about the transfer named callID, and
// the cause it gave ("" none).
func (c *Client) learn(transferID, callID, cause string) {
	// Only a leg of ours posts to this transfer's URL (its token says
	// so): the leg of an announced transfer whose answer was lost is
	// known from here on, even before the platform lists it.
	c.causes.noteLeg(transferID, callID)
	if cause != "" {
		c.causes.merge(transferID, callID, cause)
	}
}

// Notes implements orchestrator.NoteKeeper: what callbacks (and event
// histories) told of t's legs, the leg a callback named and why each leg
// ended, for the record. The book lives in this process's memory: a
// process that heard a callback and stopped (a crash, a rolling restart)
// took it along, and forwarding reaches only the replicas alive then.
// The process resuming the transfer found no leg where only a callback
// named it (one the platform never lists, its create or transfer answer
// lost) and judged it as one that never appeared: consult_failed where
// the target was busy, or the caller hanging up where the platform ended
// the caller's call with the failed transfer. It now reads them back
// from the record (recall). Nothing is kept for a transfer no callback
// told of, and the record changes only when a note does.
func (c *Client) Notes(t *orchestrator.Transfer) string {
	c.recall(t)
	return c.causes.notes(t.ID)
}

// NoteKept implements api.NoteKeeper: whether t's record (its notes,
// Notes) holds what a callback told, its note from ReceiveCallback or
// ApplyCallbackNote: the call it named, named the leg or with a cause of
// its own (a leg named later stands for the calls named before it, not
// for one this process heard named after it), and
// the cause it gave, as merged after the record's (mergeCause). transferd
// answers the callback 2xx only then, so that Catapult posts it again
// (fallbackUrl) when the process driving the transfer stopped before
// saving it. A note past the record's bound (maxSavedNotes: only forged
// callbacks name so many calls) is never kept, and such a callback is
// answered 503 each time.
func (c *Client) NoteKept(t *orchestrator.Transfer, note string) bool {
	callID, cause, _ := strings.Cut(note, "/")
	leg, kept := "", ""
	for part := range strings.FieldsSeq(t.ProviderNotes) {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case legKey:
			leg = v
		case callID:
			kept = v
		}
	}
	if leg == "" && kept == "" {
		return false
	}
	if cause == "" && leg != callID && c.causes.leg(t.ID) == callID {
		// Named here after every call the record's leg stands for (a
		// create sent again after a lost answer, that answer lost too):
		// the record names a leg before it, and a process resuming the
		// transfer from it would follow that one.
		return false
	}
	return cause == "" || (kept != "" && mergeCause(kept, cause) == kept)
}

// recall takes back into the book what t's record carries (Notes), as
// the callbacks would have told it here: where the book knows a leg's
// cause too, it is merged as told after the record's (mergeCause), a
// failure the record says not undone by a plain end heard here.
func (c *Client) recall(t *orchestrator.Transfer) {
	if t.ProviderNotes != "" {
		c.causes.recall(t.ID, t.ProviderNotes)
	}
}

// maxSavedNotes bounds the notes a record keeps: the leg named, and the
// causes of a few calls (a transfer has one leg, two when a lost answer
// was followed by one sent again), the named leg's first. Only a forged
// callback could name more.
const maxSavedNotes = 8

// notes is the stored form of the transfer's notes: "leg=<call id>" for
// the leg a callback named, then "<call id>=<cause>", separated by
// spaces; the named leg's cause first, then in call id order, so that
// the same notes read the same (the engine saves only a change).
func (b *causeBook) notes(transferID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	el, ok := b.transfers[transferID]
	if !ok {
		return ""
	}
	prefix := causeKey(transferID, "")
	leg := b.m[prefix+legKey]
	var calls []string
	for _, k := range el.Value.(*bookEntry).keys {
		if id := strings.TrimPrefix(k, prefix); callIDRE.MatchString(id) && id != leg && b.m[k] != "" {
			calls = append(calls, id)
		}
	}
	slices.Sort(calls)
	var parts []string
	if leg != "" {
		parts = append(parts, legKey+"="+leg)
		if cause := b.m[prefix+leg]; cause != "" {
			parts = append(parts, leg+"="+cause)
		}
	}
	for _, id := range calls {
		if len(parts) == maxSavedNotes {
			break
		}
		parts = append(parts, id+"="+b.m[prefix+id])
	}
	return strings.Join(parts, " ")
}

// recall merges a record's notes (notes) into the book. A part that is
// not well formed (a record of another version) is skipped: the notes
// are checked as a callback is.
func (b *causeBook) recall(transferID, notes string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for part := range strings.FieldsSeq(notes) {
		k, v, ok := strings.Cut(part, "=")
		switch {
		case !ok:
		case k == legKey:
			if callIDRE.MatchString(v) && b.m[causeKey(transferID, legKey)] == "" {
				b.putLocked(transferID, legKey, v)
			}
		case callIDRE.MatchString(k) && causeRE.MatchString(v) && v == strings.ToUpper(v):
			cur, cause := b.m[causeKey(transferID, k)], v
			if cur != "" {
				cause = mergeCause(v, cur)
			}
			if cause != cur {
				b.putLocked(transferID, k, cause)
			}
		}
	}
}

// problem returns the first malformed field of the event and why.
func (ev *callbackEvent) problem() (field, msg string) {
	switch {
	case !eventTypeRE.MatchString(string(ev.EventType)):
		return "eventType", "is missing or malformed"
	case ev.CallID != "" && !callIDRE.MatchString(string(ev.CallID)):
		return "callId", "is malformed"
	case ev.Cause != "" && !causeRE.MatchString(string(ev.Cause)):
		return "cause", "is malformed"
	}
	return "", ""
}

// causeBook remembers what callbacks (or event histories) told, per
// transfer and call: hangup causes, the leg a callback named, marks of a
// history read. It is bounded by transfers, forgetting first those least
// recently used: a transfer's notes are used when written and whenever
// this client reads the transfer (touch, from Read), so those of the
// transfers in flight here outlive those of finished ones, which nothing
// reads any more. The bound follows what is in flight: at least base
// transfers, and twice the most this client has read at once. A
// transfer keeps at most maxNotesPerTransfer keys, its oldest forgotten
// first (only a forged callback naming call after call could write that
// many).
//
// It was a ring of 4,096 keys in insertion order, a key written again not
// refreshed: with more than about 1,300 transfers receiving callbacks
// during one consult (three keys each), an in-flight transfer's notes
// were evicted by newer ones, finished or not, and with them a leg only a
// callback had named or why it ended.
type causeBook struct {
	mu sync.Mutex
	m  map[string]string // causeKey → what was told
	// transfers holds each transfer's element of lru, whose value is its
	// *bookEntry; lru's front is the most recently used.
	transfers map[string]*list.Element
	lru       *list.List
	base      int // the least number of transfers kept
	size      int // the number of transfers kept: base, or more (touch)
}

// bookEntry is a transfer's part of the book: its keys in m, oldest first.
type bookEntry struct {
	transferID string
	keys       []string
}

// maxNotesPerTransfer bounds the keys one transfer keeps in the book: a
// leg or two, each with its cause and history marks, need a handful.
const maxNotesPerTransfer = 32

func newCauseBook(size int) *causeBook {
	return &causeBook{m: make(map[string]string), transfers: make(map[string]*list.Element), lru: list.New(),
		base: size, size: size}
}

func causeKey(transferID, callID string) string { return transferID + "/" + callID }

func (b *causeBook) put(transferID, callID, cause string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.putLocked(transferID, callID, cause)
}

func (b *causeBook) putLocked(transferID, callID, cause string) {
	k := causeKey(transferID, callID)
	el, ok := b.transfers[transferID]
	if ok {
		b.lru.MoveToFront(el)
	} else {
		el = b.lru.PushFront(&bookEntry{transferID: transferID})
		b.transfers[transferID] = el
		b.evictLocked()
	}
	if _, ok := b.m[k]; !ok {
		e := el.Value.(*bookEntry)
		if len(e.keys) >= maxNotesPerTransfer {
			delete(b.m, e.keys[0])
			e.keys = e.keys[1:]
		}
		e.keys = append(e.keys, k)
	}
	b.m[k] = cause
}

// evictLocked forgets the transfers least recently used beyond size.
func (b *causeBook) evictLocked() {
	for b.lru.Len() > b.size {
		el := b.lru.Back()
		e := el.Value.(*bookEntry)
		for _, k := range e.keys {
			delete(b.m, k)
		}
		delete(b.transfers, e.transferID)
		b.lru.Remove(el)
	}
}

// touch marks the notes of transfers this client reads (all those it
// watches, Read) as used, and sizes the book for them: twice as many
// transfers as it reads at once, so that the notes of those in flight
// are never the ones forgotten for newer ones.
func (b *causeBook) touch(transferIDs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.size = max(b.size, b.base, 2*len(transferIDs))
	for _, id := range transferIDs {
		if el, ok := b.transfers[id]; ok {
			b.lru.MoveToFront(el)
		}
	}
}

// merge records cause after whatever the call reported before, as
// mergeCause says, in one step so that two events of one call delivered
// at once cannot lose the one that wins.
func (b *causeBook) merge(transferID, callID, cause string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cause = mergeCause(b.m[causeKey(transferID, callID)], cause)
	b.putLocked(transferID, callID, cause)
}

// noteLeg records the call a callback for the transfer named; leg
// returns it ("" when none did).
func (b *causeBook) noteLeg(transferID, callID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.putLocked(transferID, legKey, callID)
}

func (b *causeBook) leg(transferID string) string { return b.get(transferID, legKey) }

// legKey is the causeBook key, beside the call ids, of the call a
// transfer's callbacks named.
const legKey = "leg"

func (b *causeBook) get(transferID, callID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[causeKey(transferID, callID)]
}
