package nssim

import "time"

// The call state machine. Every function here runs with s.mu held.

// ringLocked makes the leg at sd ring and schedules what the rung user's device does.
func (s *Sim) ringLocked(sess *session, sd side) {
	l := sess.leg(sd)
	l.info = InfoAlerting
	s.notifyLocked()
	stillRinging := func() bool {
		return s.liveLocked(sess) && sess.leg(sd) == l && l.info == InfoAlerting
	}
	who := l.user + "@" + l.domain
	b := s.behaviourLocked(l.domain, l.user)
	if (b.Mode == ModeBusy || b.Mode == ModeReject) && !sess.listed {
		// The leg fails at once, before any poll could see the session: it is never listed.
		s.cancelLocked(sess.listTimer)
		sess.listTimer = 0
	}
	switch b.Mode {
	case ModeBusy:
		s.afterLocked(0, func() {
			if stillRinging() {
				s.endLocked(sess, EndBusy, who+" is busy")
			}
		})
		return
	case ModeReject:
		s.afterLocked(0, func() {
			if stillRinging() {
				s.endLocked(sess, EndRejected, who+" rejected the call")
			}
		})
		return
	case ModeAfter:
		d := b.Delay
		if d <= 0 {
			d = s.cfg.AnswerDelay
		}
		s.afterLocked(d, func() {
			if stillRinging() {
				s.answerLegLocked(sess, sd)
			}
		})
	case ModeNever, ModeManual:
	default:
		s.afterLocked(0, func() {
			if stillRinging() {
				s.answerLegLocked(sess, sd)
			}
		})
		return
	}
	// Every leg that may ring for a while gives up after the PBX's answer timeout, ModeManual
	// included, as a real phone nobody picks up would.
	l.ringTimer = s.afterLocked(s.cfg.RingTimeout, func() {
		l.ringTimer = 0
		if stillRinging() {
			s.endLocked(sess, EndNoAnswer, who+" did not answer within the ring timeout")
		}
	})
}

// answerLegLocked connects a ringing leg. When it is the callback leg of a CallRequest, the
// PBX then dials the destination [C-doc: the spec's SIP trace connects the first leg before
// ringing the second].
func (s *Sim) answerLegLocked(sess *session, sd side) {
	l := sess.leg(sd)
	s.cancelLocked(l.ringTimer)
	l.ringTimer = 0
	l.info = InfoActive
	if other := sess.leg(sd.other()); !other.dialled() {
		other.callID = s.newLegIDLocked()
		s.indexLegLocked(sess, other)
		s.ringLocked(sess, sd.other())
		return
	}
	if sd == termSide && sess.byAction == "CallRequest" && !sess.targetAnswered {
		sess.targetAnswered = true
		if st := s.callIDs[sess.byCallID]; st != nil {
			st.targetAnswered++
			if st.answeredAt.IsZero() {
				st.answeredAt = s.cfg.Now()
			}
		}
	}
	s.markAnsweredLocked(sess)
	s.notifyLocked()
}

// markAnsweredLocked stamps the answer time once both parties are connected.
func (s *Sim) markAnsweredLocked(sess *session) {
	if sess.answered.IsZero() && sess.leg(origSide).connected() && sess.leg(termSide).connected() {
		sess.answered = s.cfg.Now()
	}
}

// callRequest is the decoded body of POST .../users/{user}/calls.
type callRequest struct {
	callID     string
	termUser   string
	origUser   string
	callerID   string
	autoAnswer bool
	// synchronous requests are listed at once: the real controller answers only once it
	// could read the call back [C-code].
	synchronous bool
}

// createCallLocked starts a click-to-call for user@domain: the orig (callback) leg rings
// first, and the destination is dialled once it is connected.
func (s *Sim) createCallLocked(domain, user string, req callRequest) *session {
	delete(s.creating, req.callID)
	ou, od := parseParty(req.origUser, domain)
	if ou == "" {
		ou, od = user, domain
	}
	tu, td := parseParty(req.termUser, domain)
	orig := s.partyLeg(ou, od)
	orig.callID = req.callID
	callerID := req.callerID
	if callerID == "" {
		callerID = user
	}
	sess := &session{
		id:       s.newIDLocked(),
		core:     s.nextCoreLocked(),
		domain:   domain,
		legs:     [2]*leg{orig, s.partyLeg(tu, td)},
		callerID: callerID,
		dialed:   tu,
		byAction: "CallRequest",
		byUser:   user,
		byDomain: domain,
		byCallID: req.callID,
		start:    s.cfg.Now(),
		codec:    "PCMU",
		listed:   true,
	}
	s.addSessionLocked(sess)
	s.countCallIDLocked(req.callID, sess)
	if d := s.chaos.ListingDelay + s.jitterLocked(s.chaos.ListingJitter); d > 0 && !req.synchronous {
		sess.listed = false
		if !s.failsAtOnceLocked(sess, req.autoAnswer) {
			sess.listTimer = s.afterLocked(d, func() {
				sess.listTimer = 0
				if s.liveLocked(sess) {
					sess.listed = true
				}
			})
		}
	}
	if !req.autoAnswer {
		s.ringLocked(sess, origSide)
		return sess
	}
	// Auto-answer headers make the device pick up by itself, whatever its Behaviour.
	orig.info = InfoAlerting
	s.afterLocked(0, func() {
		if s.liveLocked(sess) && sess.leg(origSide) == orig && orig.info == InfoAlerting {
			s.answerLegLocked(sess, origSide)
		}
	})
	return sess
}

// holdLocked puts the other party of uSide on hold or takes it off (both parties with
// HeldBoth). A call that is not connected end to end (still ringing) cannot be held [G].
func (s *Sim) holdLocked(sess *session, uSide side, hold bool) {
	if !s.liveLocked(sess) || !sess.leg(origSide).connected() || !sess.leg(termSide).connected() {
		return
	}
	from, to := InfoActive, InfoHeld
	if !hold {
		from, to = to, from
	}
	sides := []side{uSide.other()}
	if s.cfg.HeldSide == HeldBoth {
		sides = []side{origSide, termSide}
	}
	for _, sd := range sides {
		if l := sess.leg(sd); l.info == from {
			l.info = to
		}
	}
	s.notifyLocked()
}

// blindTransferLocked replaces uSide's leg with a new leg to target, which rings per the
// target's Behaviour; if it fails, the session ends with the failure's reason.
func (s *Sim) blindTransferLocked(sess *session, uSide side, target, domain string) {
	if !s.liveLocked(sess) {
		return
	}
	tu, td := parseParty(target, domain)
	nl := s.partyLeg(tu, td)
	nl.callID = s.newLegIDLocked()
	s.setLegLocked(sess, uSide, nl)
	// The transferred party is no longer parked behind the transferring user's hold.
	if r := sess.leg(uSide.other()); r.info == InfoHeld {
		r.info = InfoActive
	}
	s.ringLocked(sess, uSide)
}

// attendedTransferLocked merges the remote party of sess with the consulted party of dest and
// drops the transferring user's legs in both.
//
// Which ids survive is undocumented [G]; Config.JoinKeeps chooses. With JoinKeepsCaller sess
// keeps its call-session-id and its remote leg, the consulted party's leg (with its Call-ID)
// takes the place of the transferring user's leg, and dest ends with EndTransferred. With
// JoinKeepsConsult dest keeps its call-session-id, call-by-* fields and consulted party, the
// remote party's leg (with its Call-ID) takes the place of the transferring user's leg there,
// the CallRequest's call-id still addresses dest, and sess ends with EndTransferred.
func (s *Sim) attendedTransferLocked(sess, dest *session, domain, user string, uSide side) {
	if !s.liveLocked(sess) || !s.liveLocked(dest) || sess == dest {
		return
	}
	remote := sess.leg(uSide.other())
	// The transferring user's end of dest; the consulted party is at the other.
	destUser := origSide
	if !dest.leg(origSide).is(domain, user) && dest.leg(termSide).is(domain, user) {
		destUser = termSide
	}
	target := dest.leg(destUser.other())
	// The switch bridges only connected parties: a consultation that has not been answered
	// yet is not merged [G], which is why the guide says to check it first.
	if !target.connected() || !remote.connected() {
		return
	}
	if s.cfg.JoinKeeps == JoinKeepsConsult {
		moved := *remote
		moved.info = InfoActive
		moved.ringTimer = 0
		// End sess first: it un-indexes the remote party's Call-ID, which dest then takes over.
		s.endLocked(sess, EndTransferred, "merged into session "+dest.id+" by "+user+"@"+domain)
		s.setLegLocked(dest, destUser, &moved)
		// The call-id a CallRequest names is there to "read back the call later or end it"
		// [C-doc]: it still addresses the session it created, now the caller's call.
		if id := dest.byCallID; id != "" {
			if _, onLeg := dest.sideOf(id); !onLeg {
				s.aliasLocked(dest, id)
			}
		}
		dest.byHidden = s.cfg.JoinHidesCallBy
		target.info = InfoActive
		s.markAnsweredLocked(dest)
		s.notifyLocked()
		return
	}
	merged := *target
	merged.info = InfoActive
	merged.ringTimer = 0
	// End dest first: it un-indexes the consulted party's Call-ID, which sess then takes over.
	s.endLocked(dest, EndTransferred, "merged into session "+sess.id+" by "+user+"@"+domain)
	s.setLegLocked(sess, uSide, &merged)
	remote.info = InfoActive
	s.markAnsweredLocked(sess)
	s.notifyLocked()
}

// partyLeg builds a leg to user@domain: a user's device, or, for an external number under
// NumbersPSTN, the PSTN through the gateway, rendered as the spec's example renders it.
func (s *Sim) partyLeg(user, domain string) *leg {
	l := userLeg(user, domain)
	if s.cfg.ExternalNumbers == NumbersPSTN && externalNumber(user) {
		l.number = user
		l.uri = "sip:" + user + "@" + gatewayIP
		l.match = "sip:*@" + gatewayIP
	}
	return l
}

// failsAtOnceLocked reports whether a new CallRequest session will end at once because its
// target is busy or rejects and its callback leg connects without ringing. Such a session is
// never listed (Chaos.ListingDelay): deciding it at creation, instead of racing the listing
// timer against the failure, is what makes "it never appears" hold however short the delay.
func (s *Sim) failsAtOnceLocked(sess *session, autoAnswer bool) bool {
	o, t := sess.leg(origSide), sess.leg(termSide)
	switch s.behaviourLocked(t.domain, t.user).Mode {
	case ModeBusy, ModeReject:
	default:
		return false
	}
	if autoAnswer {
		return true
	}
	m := s.behaviourLocked(o.domain, o.user).Mode
	return m == "" || m == ModeAnswer
}

// callIDStats is what Truth reports about one CallRequest call-id.
type callIDStats struct {
	sessions       []*session // every session created with the call-id, oldest first
	targetAnswered int        // how many of them ever had their target leg connected
	// answeredAt: when a target leg first connected; joinRequestedAt: when an attended
	// transfer naming one of the sessions as its destination first arrived. Zero until then.
	answeredAt, joinRequestedAt time.Time
}

// countCallIDLocked records a session created with callID, bounding the history like the
// others (HistoryLimit) without forgetting a call-id that still has a live session.
func (s *Sim) countCallIDLocked(callID string, sess *session) {
	st := s.callIDs[callID]
	if st == nil {
		st = &callIDStats{}
		s.callIDs[callID] = st
		s.callIDOrder = append(s.callIDOrder, callID)
	}
	st.sessions = append(st.sessions, sess)
	limit := s.cfg.HistoryLimit
	if limit == 0 || len(s.callIDOrder) < max(2*limit, s.callIDTrimAt) {
		return
	}
	cut := len(s.callIDOrder) - limit
	kept := make([]string, 0, limit)
	for i, id := range s.callIDOrder {
		if i >= cut || s.callIDLiveLocked(s.callIDs[id]) > 0 {
			kept = append(kept, id)
			continue
		}
		delete(s.callIDs, id)
	}
	s.callIDOrder = kept
	// Call-ids with a live session are kept; with many of them (tens of thousands of parked
	// consults) trimming again at the next new call-id would scan them all each time. The
	// next trim waits until the list has doubled, so trimming stays O(1) per call-id.
	s.callIDTrimAt = 2 * len(kept)
}

// callIDLiveLocked counts the live sessions among those created with one call-id.
func (s *Sim) callIDLiveLocked(st *callIDStats) int {
	n := 0
	for _, sess := range st.sessions {
		if s.liveLocked(sess) {
			n++
		}
	}
	return n
}
