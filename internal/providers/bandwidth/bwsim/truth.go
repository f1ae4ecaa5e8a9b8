package bwsim

import "slices"

// This file is the ground truth of invariant tests: the simulator's real state, whatever the
// API shows (calls not listed yet, vanished legs, actions not applied yet). A randomized test
// checks it, never the word of the client under test.

// Truth is every call and bridge as they really are.
type Truth struct {
	Calls   []TruthCall `json:"calls"`   // oldest first, including unlisted and vanished calls
	Bridges []Bridge    `json:"bridges"` // oldest first, with members and bridgeAudio
	// Tags groups the calls by every tag they ever carried, in order of first use.
	Tags []TagTruth `json:"tags"`
	// PendingActions counts accepted actions waiting for their delay; UnlistedCalls the
	// created calls that listings do not show yet. Both 0 once settled (WaitSettled).
	PendingActions int `json:"pending_actions"`
	UnlistedCalls  int `json:"unlisted_calls"`
}

// TruthCall is one call's real state and what it hears.
type TruthCall struct {
	ID        string `json:"id"`
	Direction string `json:"direction"`
	From      string `json:"from"`
	To        string `json:"to"`
	State     string `json:"state"`
	Cause     string `json:"cause,omitempty"`
	// Tag is the current tag; Tags every tag it ever carried.
	Tag  string   `json:"tag,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// BridgeID is the bridge it is a member of; PendingBridgeID the one it joins on answer.
	BridgeID        string `json:"bridge_id,omitempty"`
	PendingBridgeID string `json:"pending_bridge_id,omitempty"`
	// ParentCallID (on a transfer B-leg) and TransferCallID (on a transferred call) link
	// the legs of a transfer.
	ParentCallID   string `json:"parent_call_id,omitempty"`
	TransferCallID string `json:"transfer_call_id,omitempty"`
	// Answered reports that it was ever answered; Up that it is answered and not ended.
	Answered bool `json:"answered"`
	Up       bool `json:"up"`
	// Listed reports that GET calls shows it now, Readable that GET calls/{id} does, and
	// Vanished that no read ever will (Config.VanishFailedLegs).
	Listed   bool `json:"listed"`
	Readable bool `json:"readable"`
	Vanished bool `json:"vanished,omitempty"`
	// Held is Sim.Held: up and in a bridge with bridgeAudio false, or alone in one.
	Held bool `json:"held"`
	// ConnectedTo lists the calls it hears (Sim.Connected): a bridge partner with
	// bridgeAudio on, or the connected leg of a transfer.
	ConnectedTo []string `json:"connected_to"`
}

// TagTruth is every call that ever carried a tag.
type TagTruth struct {
	Tag   string   `json:"tag"`
	Calls []string `json:"calls"` // oldest first
	// Answered counts those ever answered: more than one answered consult leg under one
	// tag is a second target connected.
	Answered int `json:"answered"`
	// NotEnded counts those ringing or up now.
	NotEnded int `json:"not_ended"`
}

// Call returns the call with the id.
func (t Truth) Call(id string) (TruthCall, bool) {
	i := slices.IndexFunc(t.Calls, func(c TruthCall) bool { return c.ID == id })
	if i < 0 {
		return TruthCall{}, false
	}
	return t.Calls[i], true
}

// Bridge returns the bridge with the id.
func (t Truth) Bridge(id string) (Bridge, bool) {
	i := slices.IndexFunc(t.Bridges, func(b Bridge) bool { return b.ID == id })
	if i < 0 {
		return Bridge{}, false
	}
	return t.Bridges[i], true
}

// Tag returns the calls that ever carried the tag (zero counts when none did).
func (t Truth) Tag(tag string) TagTruth {
	i := slices.IndexFunc(t.Tags, func(g TagTruth) bool { return g.Tag == tag })
	if i < 0 {
		return TagTruth{Tag: tag, Calls: []string{}}
	}
	return t.Tags[i]
}

// Connected reports whether the two calls hear each other.
func (t Truth) Connected(a, b string) bool {
	c, ok := t.Call(a)
	return ok && slices.Contains(c.ConnectedTo, b)
}

// Truth returns the simulator's real state: every call (listed or not), every bridge, and
// the calls of every tag.
func (s *Sim) Truth() Truth {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := Truth{
		Calls:          make([]TruthCall, 0, len(s.calls)),
		Bridges:        make([]Bridge, 0, len(s.bridges)),
		Tags:           []TagTruth{},
		PendingActions: len(s.delayed),
		UnlistedCalls:  len(s.unlisted),
	}
	tagIndex := make(map[string]int)
	for _, c := range s.sortedCallsLocked() {
		tc := TruthCall{
			ID:              c.ID,
			Direction:       c.Direction,
			From:            c.From,
			To:              c.To,
			State:           c.State,
			Cause:           c.Cause,
			Tag:             c.Tag,
			Tags:            slices.Clone(c.tags),
			BridgeID:        c.BridgeID,
			PendingBridgeID: c.PendingBridgeID,
			ParentCallID:    c.ParentCallID,
			TransferCallID:  c.TransferCallID,
			Answered:        !c.ActiveTime.IsZero(),
			Up:              c.live(),
			Listed:          s.listedLocked(c),
			Readable:        s.readableCallLocked(c.ID) != nil,
			Vanished:        c.vanished,
			Held:            s.heldLocked(c.ID),
			ConnectedTo:     s.connectedToLocked(c),
		}
		t.Calls = append(t.Calls, tc)
		for _, tag := range c.tags {
			i, ok := tagIndex[tag]
			if !ok {
				i = len(t.Tags)
				tagIndex[tag] = i
				t.Tags = append(t.Tags, TagTruth{Tag: tag, Calls: []string{}})
			}
			g := &t.Tags[i]
			g.Calls = append(g.Calls, c.ID)
			if tc.Answered {
				g.Answered++
			}
			if !c.Ended() {
				g.NotEnded++
			}
		}
	}
	for _, b := range s.sortedBridgesLocked() {
		t.Bridges = append(t.Bridges, b.Bridge.clone())
	}
	return t
}

// connectedToLocked lists the calls c hears. Only its transfer peer and its bridge partner
// can qualify, so the others are not examined.
func (s *Sim) connectedToLocked(c *call) []string {
	out := []string{}
	candidates := []string{c.peer}
	if b := s.bridges[c.BridgeID]; b != nil {
		candidates = append(candidates, b.CallIDs...)
	}
	for _, id := range candidates {
		if id != "" && !slices.Contains(out, id) && s.connectedLocked(c.ID, id) {
			out = append(out, id)
		}
	}
	return out
}
