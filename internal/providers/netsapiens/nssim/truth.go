package nssim

import "time"

// Truth is the PBX's own state, for invariant checks that must not take the client's word
// (or the API's lagging listings) for it: every live session, listed or not, every
// CallRequest call-id with what became of its sessions, and every ended session.
type Truth struct {
	// Sessions are the live sessions, oldest first, including those not listed yet.
	Sessions []SessionTruth `json:"sessions"`
	// CallIDs are the call-ids of API-created calls (CallRequest), first seen first,
	// bounded by HistoryLimit like the other history (a call-id with a live session is kept).
	CallIDs []CallIDTruth `json:"call_ids"`
	// Ended are the sessions that ended, oldest first, with why (as Ended).
	Ended []EndedSession `json:"ended"`
	// PendingActions is how many accepted (202) actions have not been applied yet.
	PendingActions int `json:"pending_actions"`
}

// SessionTruth is one live session as the switch knows it.
type SessionTruth struct {
	SessionID  string `json:"session_id"`
	Domain     string `json:"domain"`
	CoreServer string `json:"core_server"`
	// Listed is whether the API's GETs show the session yet (Chaos.ListingDelay).
	Listed bool `json:"listed"`
	// ByAction is "CallRequest" for API-created calls, "" for calls from outside.
	ByAction string `json:"call_by_action"`
	ByUser   string `json:"call_by_user"`
	ByDomain string `json:"call_by_domain"`
	// ByCallID is the call-id of the CallRequest that created the session.
	ByCallID string   `json:"call_by_call_id"`
	Orig     LegTruth `json:"orig"`
	Term     LegTruth `json:"term"`
	// TargetAnswered is whether the term leg of a CallRequest (its target) ever connected.
	TargetAnswered bool `json:"target_answered"`
	// Call is the record the API renders (or will, once listed).
	Call ActiveCall `json:"call"`
}

// LegTruth is one end of a session.
type LegTruth struct {
	CallID string `json:"call_id"` // "" until the leg is dialled
	User   string `json:"user"`    // "" for a PSTN party
	Domain string `json:"domain"`
	State  string `json:"state"` // InfoAlerting, InfoActive, InfoHeld, or "" until dialled
	// Number is the number of a PSTN party: an inbound call's caller, or an external number
	// under NumbersPSTN. "" for a user.
	Number string `json:"number,omitempty"`
}

// CallIDTruth is what became of the sessions created with one CallRequest call-id. More than
// one session means a duplicate was accepted (Chaos.DuplicateCallIDs); TargetAnswered above 1
// means a second consult leg was connected.
type CallIDTruth struct {
	CallID string `json:"call_id"`
	// Sessions is how many sessions were created with the call-id.
	Sessions int `json:"sessions"`
	// TargetAnswered is how many of them ever had their target leg connected.
	TargetAnswered int `json:"target_answered"`
	// Live is how many of them are live now (listed or not).
	Live int `json:"live"`
	// SessionIDs are their call-session-ids, oldest first.
	SessionIDs []string `json:"session_ids"`
	// TargetAnsweredAt is when a target leg of theirs first connected (the PBX's clock).
	TargetAnsweredAt *time.Time `json:"target_answered_at,omitempty"`
	// JoinRequestedAt is when an attended transfer naming one of them as its destination
	// first arrived, whatever became of it: with TargetAnsweredAt, how long the target
	// waited, answered, for the client to join it.
	JoinRequestedAt *time.Time `json:"join_requested_at,omitempty"`
}

// Truth returns the PBX's state now.
func (s *Sim) Truth() Truth {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := Truth{
		Sessions: []SessionTruth{},
		CallIDs:  make([]CallIDTruth, 0, len(s.callIDOrder)),
		Ended:    append([]EndedSession{}, newest(s.ended, s.cfg.HistoryLimit)...),

		PendingActions: s.pending,
	}
	for _, sess := range s.sortedLocked("", func(*session) bool { return true }) {
		t.Sessions = append(t.Sessions, SessionTruth{
			SessionID:      sess.id,
			Domain:         sess.domain,
			CoreServer:     sess.core,
			Listed:         sess.listed,
			ByAction:       sess.byAction,
			ByUser:         sess.byUser,
			ByDomain:       sess.byDomain,
			ByCallID:       sess.byCallID,
			Orig:           sess.leg(origSide).truth(origSide),
			Term:           sess.leg(termSide).truth(termSide),
			TargetAnswered: sess.targetAnswered,
			Call:           sess.record(s.render),
		})
	}
	for _, id := range s.callIDOrder {
		st := s.callIDs[id]
		ct := CallIDTruth{
			CallID:         id,
			Sessions:       len(st.sessions),
			TargetAnswered: st.targetAnswered,
			Live:           s.callIDLiveLocked(st),
			SessionIDs:     make([]string, 0, len(st.sessions)),
		}
		for _, sess := range st.sessions {
			ct.SessionIDs = append(ct.SessionIDs, sess.id)
		}
		if !st.answeredAt.IsZero() {
			at := st.answeredAt
			ct.TargetAnsweredAt = &at
		}
		if !st.joinRequestedAt.IsZero() {
			at := st.joinRequestedAt
			ct.JoinRequestedAt = &at
		}
		t.CallIDs = append(t.CallIDs, ct)
	}
	return t
}

func (l *leg) truth(sd side) LegTruth {
	user, domain := l.party(sd)
	return LegTruth{CallID: l.callID, User: user, Domain: domain, State: l.info, Number: l.number}
}
