package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Callbacks forwarded between replicas. A provider's callback (a
// Bandwidth hangup, say) reaches whichever replica the load balancer
// chose, and what it tells (why the consult ended) lives in the memory of
// the provider client that received it. That replica, whether or not it
// drives the transfer, forwards what the callback told on the notification
// channel the saves use (ForwardCallback), and every other replica's
// listener hands it to its own client (ListenCallbacks): the replica that
// drives the transfer knows it as if the callback had come to it, and so
// does one that takes the transfer over later.
//
// A forward's payload is one word, the sending Store's token, callbackMark
// and then tenant, provider, transfer id and note separated by slashes.
// One word because every listener of this version and of the one before
// ignores a payload of fewer than two words (parsePayload): an older
// replica hears nothing of a forward, as before forwards existed. None of
// it is a secret: tenant names, provider names, transfer ids and a
// provider's call ids and hangup causes.
//
// Forwarding is best effort, as the callback itself is: a forward that
// is lost (no listener hears it, a pooler in transaction mode, a replica
// that stops) loses only the precision the callback would have added; the
// transfer still reads the provider's state.

// callbackMark marks a forwarded callback's payload, between the token
// and the rest.
const callbackMark = ":callback:"

// forwarded is a forwarded callback, as parseCallback reads it.
type forwarded struct{ tenant, provider, transferID, note string }

// ForwardCallback sends what a callback about tenant's transfer
// transferID told provider's client (its note: one word, no slash in the
// other three) to the other replicas' ListenCallbacks. It returns once
// the server accepted it; an error if it did not, or if the parts cannot
// be sent.
func (s *Store) ForwardCallback(ctx context.Context, tenant, provider, transferID, note string) error {
	for _, part := range []string{tenant, provider, transferID} {
		if part == "" || strings.Contains(part, "/") {
			return s.fail("forward a callback", fmt.Errorf("cannot forward a callback of %q, %q, %q: a part is empty or has a slash", tenant, provider, transferID))
		}
	}
	payload := s.token + callbackMark + tenant + "/" + provider + "/" + transferID + "/" + note
	if note == "" || len(payload) > maxPayload || len(strings.Fields(payload)) != 1 {
		return s.fail("forward a callback", errors.New("the callback's note is empty, too long, or not one word"))
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, payload); err != nil {
		return s.fail("forward a callback", err)
	}
	return nil
}

// ListenCallbacks has heard called with each callback another replica
// (another Store on this database and schema) forwards, once the server
// delivers it; what is forwarded while the listener does not listen is
// not heard. It starts the listener of ListenEvents if none runs: where
// both are used, ListenEvents comes first, as a listener started here
// tells no events handler added later that it started (ListenEvents's
// ""). heard must not block: it is called from the listener's goroutine.
func (s *Store) ListenCallbacks(heard func(tenant, provider, transferID, note string)) {
	s.addHandler(eventsHandler{callback: heard})
}

// parseCallback reads a forwarded callback's payload; ok is false for
// any other payload and for this Store's own forwards, whose callbacks
// its replica received itself.
func (s *Store) parseCallback(p string) (f forwarded, ok bool) {
	token, rest, ok := strings.Cut(p, callbackMark)
	if !ok || token == s.token || strings.ContainsAny(token, " /") {
		return forwarded{}, false
	}
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return forwarded{}, false
	}
	return forwarded{tenant: parts[0], provider: parts[1], transferID: parts[2], note: parts[3]}, true
}

// Word of saved notes. A callback's answer waits until its transfer's
// saved record holds what it told (api: noteSaved); on a replica that
// does not drive the transfer it read the store every quarter of
// TRANSFERD_POLL_MAX_INTERVAL, and a save made milliseconds after the
// callback was seen about half a second later. The driving replica now
// says, on the same channel, that it saved notes into a transfer's
// record (AnnounceNotesSaved, after the save), and the others' waits on
// it read it at once (ListenNotesSaved). A payload is one word, the
// sending Store's token, notesMark and the transfer id: every listener of
// this version and of the ones before ignores a payload of one word that
// is not its own probe nor a forward. Best effort, as forwards are: a word
// lost costs a wait its next poll.

// notesMark marks the payload of a word of saved notes, between the token
// and the transfer id.
const notesMark = ":notes:"

// AnnounceNotesSaved tells the other replicas' ListenNotesSaved that this
// replica saved notes into transfer id's record. It returns once the
// server accepted the word.
func (s *Store) AnnounceNotesSaved(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, " \x00") || len(id) > maxPayload-len(s.token)-len(notesMark) {
		return s.fail("announce saved notes", fmt.Errorf("cannot announce the notes of transfer %q", id))
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.token+notesMark+id); err != nil {
		return s.fail("announce saved notes", err)
	}
	return nil
}

// ListenNotesSaved has heard called with the id of each transfer another
// replica (another Store on this database and schema) announces it saved
// notes of (AnnounceNotesSaved); what is announced while the listener
// does not listen is not heard. Like ListenCallbacks, it starts the
// listener if none runs. heard must not block.
func (s *Store) ListenNotesSaved(heard func(id string)) {
	s.addHandler(eventsHandler{notesSaved: heard})
}

// parseNotesSaved reads a word of saved notes; ok is false for any other
// payload and for this Store's own.
func (s *Store) parseNotesSaved(p string) (id string, ok bool) {
	token, id, ok := strings.Cut(p, notesMark)
	if !ok || token == s.token || id == "" || strings.ContainsAny(token, " /") || strings.Contains(id, " ") {
		return "", false
	}
	return id, true
}
