package bwsim

import (
	"net/http"
	"slices"
)

// This file is the bridge model (notes §6, §12.5) and its API handlers.

func (s *Sim) newBridgeLocked(audio bool) *bridge {
	b := &bridge{
		Bridge: Bridge{
			ID:          newID("brg-"),
			State:       BridgeCreated,
			BridgeAudio: audio,
			CallIDs:     []string{},
			CreatedTime: s.now(),
		},
		seq: s.nextSeq(),
	}
	s.bridges[b.ID] = b
	return b
}

func (s *Sim) joinBridgeLocked(b *bridge, c *call) {
	c.BridgeID = b.ID
	c.PendingBridgeID = ""
	b.CallIDs = append(b.CallIDs, c.ID)
	b.hadCalls = true
}

func (s *Sim) leaveBridgeLocked(b *bridge, c *call) {
	c.BridgeID = ""
	b.CallIDs = slices.DeleteFunc(b.CallIDs, func(id string) bool { return id == c.ID })
}

// refreshBridgeLocked derives the bridge state from its membership and audio flag:
// "completed" once every call left or hung up, "hold" while bridgeAudio is false, "active"
// once two answered calls had their audio bridged, "created" before that.
func (s *Sim) refreshBridgeLocked(b *bridge) {
	if b.State == BridgeCompleted {
		return
	}
	if len(b.CallIDs) == 0 {
		if b.hadCalls {
			b.State = BridgeCompleted
			b.CompletedTime = s.now()
		}
		return
	}
	if !b.BridgeAudio {
		b.State = BridgeHold
		return
	}
	live := 0
	for _, id := range b.CallIDs {
		if c := s.calls[id]; c != nil && c.live() {
			live++
		}
	}
	if live == 2 && b.ActivatedTime.IsZero() {
		b.ActivatedTime = s.now()
	}
	if b.ActivatedTime.IsZero() {
		b.State = BridgeCreated
	} else {
		b.State = BridgeActive
	}
}

// checkMembersLocked validates a bridge's new membership: at most two calls, each existing,
// not ended and not in another bridge. Duplicates are dropped.
func (s *Sim) checkMembersLocked(b *bridge, ids []string) ([]*call, *apiError) {
	ids = dedupe(ids)
	if len(ids) > 2 {
		return nil, s.errForbidden("bridge-callIds-overflow", "Only two calls are allowed in a bridge")
	}
	calls := make([]*call, 0, len(ids))
	for _, id := range ids {
		c := s.apiCallLocked(id)
		if c == nil {
			return nil, errCallNotFound(id)
		}
		if c.Ended() {
			// Bridging an ended call: the code is [INF].
			return nil, s.errInvalidState(id, c.State)
		}
		if c.BridgeID != "" && (b == nil || c.BridgeID != b.ID) {
			return nil, errBadRequest("bridge-bridged-callId", "The callId `"+id+"` is already in another bridge")
		}
		calls = append(calls, c)
	}
	return calls, nil
}

// setMembersLocked replaces the membership with calls (already checked).
func (s *Sim) setMembersLocked(b *bridge, calls []*call) {
	for _, id := range slices.Clone(b.CallIDs) {
		if c := s.calls[id]; c != nil && !slices.Contains(calls, c) {
			s.leaveBridgeLocked(b, c)
		}
	}
	for _, c := range calls {
		if c.BridgeID != b.ID {
			s.joinBridgeLocked(b, c)
		}
	}
	s.refreshBridgeLocked(b)
}

// handleCreateBridge is POST bridges {"bridgeAudio", "callIds"}: 201 + Location.
func (s *Sim) handleCreateBridge(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("bridge", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	// Both fields are optional; bridgeAudio defaults to true [INF]: every documented example
	// sends true and a bridge exists to connect audio.
	audio, hasAudio, e := in.boolean("bridgeAudio")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	if !hasAudio {
		audio = true
	}
	ids, _, e := in.strings("callIds")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	calls, e := s.checkMembersLocked(nil, ids)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	b := s.newBridgeLocked(audio)
	b.API = true
	s.setMembersLocked(b, calls)
	w.Header().Set("Location", s.locationLocked(r, "bridges", b.ID))
	w.WriteHeader(http.StatusCreated)
}

// handleUpdateBridge is POST bridges/{id} {"bridgeAudio", "callIds"}: callIds is the full new
// membership ([] empties the bridge); 200 with an empty body. It is an action: checked now,
// applied now or after Config.ActionDelay.
func (s *Sim) handleUpdateBridge(w http.ResponseWriter, r *http.Request, rt apiRoute, body []byte) {
	in, e := parseBody("bridge", body)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	audio, hasAudio, e := in.boolean("bridgeAudio")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	ids, hasIDs, e := in.strings("callIds")
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bridges[rt.bridgeID]
	if b == nil {
		s.writeError(w, r, errBridgeNotFound(rt.bridgeID))
		return
	}
	if b.State == BridgeCompleted {
		// Reviving a completed bridge: refused with bridge-invalid-state [GUESS].
		s.writeError(w, r, errBadRequest("bridge-invalid-state", "The bridge `"+b.ID+"` is in an invalid state `completed`"))
		return
	}
	if hasIDs {
		if _, e = s.checkMembersLocked(b, ids); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	id := b.ID
	s.actLocked(OpUpdateBridge, id, body, func() string {
		// Checked again: with ActionDelay the bridge or its calls may have changed.
		b := s.bridges[id]
		if b.State == BridgeCompleted {
			return "The bridge `" + b.ID + "` is in an invalid state `completed`"
		}
		var calls []*call
		if hasIDs {
			var e *apiError
			if calls, e = s.checkMembersLocked(b, ids); e != nil {
				return e.Message
			}
		}
		if hasAudio {
			b.BridgeAudio = audio
		}
		if hasIDs {
			s.setMembersLocked(b, calls)
		} else {
			s.refreshBridgeLocked(b)
		}
		return ""
	})
	w.WriteHeader(http.StatusOK)
}

// handleGetBridge is GET bridges/{id}.
func (s *Sim) handleGetBridge(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bridges[rt.bridgeID]
	if b == nil {
		s.writeError(w, r, errBridgeNotFound(rt.bridgeID))
		return
	}
	writeJSON(w, http.StatusOK, s.renderBridgeLocked(r, b))
}

// handleBridgeCalls is GET bridges/{id}/calls: the member calls.
func (s *Sim) handleBridgeCalls(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bridges[rt.bridgeID]
	if b == nil {
		s.writeError(w, r, errBridgeNotFound(rt.bridgeID))
		return
	}
	out := make([]apiCall, 0, len(b.CallIDs))
	for _, id := range b.CallIDs {
		if c := s.calls[id]; c != nil && s.listedLocked(c) {
			out = append(out, s.renderCallLocked(r, c))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleListBridges is GET bridges with page, size and sortOrder.
func (s *Sim) handleListBridges(w http.ResponseWriter, r *http.Request, rt apiRoute, _ []byte) {
	pg, e := parsePaging(r)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.sortedBridgesLocked()
	if pg.desc {
		slices.Reverse(bs)
	}
	page, more := pg.slice(len(bs))
	out := make([]apiBridge, 0, page.hi-page.lo)
	for _, b := range bs[page.lo:page.hi] {
		out = append(out, s.renderBridgeLocked(r, b))
	}
	s.setLinks(w, r, pg, more)
	writeJSON(w, http.StatusOK, out)
}

// dedupe drops repeated ids, keeping the first of each.
func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
