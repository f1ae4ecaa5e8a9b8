package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The parties. NetSapiens users live in domain TEST; the agent's extension
// is chosen per case (see agentUser). Bandwidth numbers: the caller dials
// an owned number, the agent leg is bridged with it.
const (
	nsDomain = pbxsim.DemoDomain
	nsTarget = "1010"

	bwCaller = "+15555550123"
	bwOwned  = "+15555550100" // owned by the demo account
	bwAgent  = "+15555550111"
	bwTarget = "+15555550142"
)

// flow is one way a transfer goes, from the request to its natural end.
type flow struct {
	name       string
	provider   string // "netsapiens" or "bandwidth"
	mode       string // "attended" or "announced"
	completion string // "auto" or "manual"
	// signal is what the client posts once the transfer waits for it:
	// "complete" or "cancel"; "" for none.
	signal string
	// ringing: the target never answers on its own, so the consult is
	// cancelled while it rings (the only cancel an announced transfer has).
	ringing bool
	// Shape of the provider's choreography (orchestrator.Flow).
	hold, join, hangupAgent bool
}

// flows is the case matrix. An announced transfer has no consult phase
// (completion "manual" is refused with 422), so its second flow cancels
// while the target rings.
var flows = []flow{
	{name: "netsapiens-attended-auto", provider: "netsapiens", mode: "attended", completion: "auto", hold: true, join: true},
	{name: "netsapiens-attended-manual-complete", provider: "netsapiens", mode: "attended", completion: "manual", signal: "complete", hold: true, join: true},
	{name: "netsapiens-attended-manual-cancel", provider: "netsapiens", mode: "attended", completion: "manual", signal: "cancel", hold: true, join: true},
	{name: "bandwidth-attended-auto", provider: "bandwidth", mode: "attended", completion: "auto", hold: true, join: true, hangupAgent: true},
	{name: "bandwidth-attended-manual-complete", provider: "bandwidth", mode: "attended", completion: "manual", signal: "complete", hold: true, join: true, hangupAgent: true},
	{name: "bandwidth-attended-manual-cancel", provider: "bandwidth", mode: "attended", completion: "manual", signal: "cancel", hold: true, join: true, hangupAgent: true},
	{name: "bandwidth-announced-auto", provider: "bandwidth", mode: "announced", completion: "auto"},
	{name: "bandwidth-announced-cancel", provider: "bandwidth", mode: "announced", completion: "auto", signal: "cancel", ringing: true},
}

// cancels reports whether the flow ends by the client's cancel.
func (f flow) cancels() bool { return f.signal == "cancel" }

// natural is the terminal state the flow reaches when nothing goes wrong.
func (f flow) natural() string {
	if f.cancels() {
		return "cancelled"
	}
	return "completed"
}

// points derives every crash point the flow reaches on side sd, in order:
// each step's intent, effect and result, and each state transition. The
// baseline run of each flow checks this list against what the engine
// really did. A step made again is its points with the time it is made
// ("transfer:intent#2"; TRANSFERD_TEST_CRASH_AT).
func (f flow) points(sd side) []string {
	var ps []string
	step := func(name string) {
		ps = append(ps, name+":intent", name+":effect", name+":result")
	}
	state := func(s string) { ps = append(ps, "state:"+s) }
	step("locate")
	if f.hold {
		state("holding")
		step("hold")
	}
	state("dialing")
	step("dial")
	state("consulting")
	if f.cancels() {
		state("recovering")
		step("hangup_consult") // undos run newest first
		if f.hold {
			step("unhold")
		}
		state("cancelled")
		return ps
	}
	state("completing")
	if f.join {
		step("transfer")
		if f.provider == "netsapiens" && sd.joinsTwice() {
			ps = append(ps, "transfer:intent#2", "transfer:effect#2", "transfer:result#2")
		}
	}
	// Verifying the join is a reading, not a step: no crash point. The
	// agent's call is hung up once the join is seen.
	if f.hangupAgent {
		step("hangup_agent")
	}
	state("completed")
	return ps
}

// signalDue reports whether the client should now post the flow's signal.
func (f flow) signalDue(tr *transfer) bool {
	if f.signal == "" || tr.State != "consulting" {
		return false
	}
	return tr.TargetAnswered || f.ringing
}

// placed is the call a case transfers, as the simulator created it.
type placed struct {
	// NetSapiens
	user    string // the agent's extension
	session nssim.ActiveCall
	// Bandwidth
	a, g string // caller's and agent's call ids
	b1   string // their bridge
}

// agentUser is the NetSapiens agent of case n: a different user per case,
// so that a transfer a failed case left unfinished never holds the next
// case's call (one active transfer per user).
func agentUser(n int) string { return fmt.Sprint(2000 + n) }

// placeCall resets the simulator, sets how the target answers, and places
// the call to transfer.
func placeCall(ctx context.Context, f flow, n int) (placed, error) {
	var pl placed
	if err := simReset(ctx); err != nil {
		return pl, err
	}
	mode := "answer"
	if f.ringing {
		mode = "manual"
	}
	if f.provider == "netsapiens" {
		pl.user = agentUser(n)
		if err := sim(ctx, http.MethodPut, pbxsim.NetSapiensControlPath+"/users/"+nsDomain+"/"+nsTarget+"/behaviour",
			map[string]string{"mode": mode}, nil); err != nil {
			return pl, err
		}
		err := sim(ctx, http.MethodPost, pbxsim.NetSapiensControlPath+"/calls",
			map[string]string{"domain": nsDomain, "user": pl.user}, &pl.session)
		return pl, err
	}
	if err := sim(ctx, http.MethodPut, pbxsim.BandwidthControlPath+"/numbers/"+bwTarget+"/behaviour",
		map[string]string{"mode": mode}, nil); err != nil {
		return pl, err
	}
	in := map[string]string{"from": bwCaller, "to": bwOwned}
	if f.mode == "attended" {
		in["agent"] = bwAgent
	}
	var out bwsim.PlaceCallResult
	if err := sim(ctx, http.MethodPost, pbxsim.BandwidthControlPath+"/calls", in, &out); err != nil {
		return pl, err
	}
	pl.a = out.Call.ID
	if out.AgentCall != nil {
		pl.g, pl.b1 = out.AgentCall.ID, out.Bridge.ID
	}
	return pl, nil
}

// request is the POST /v1/transfers body of the flow for the placed call.
func (f flow) request(pl placed) map[string]any {
	r := map[string]any{"provider": f.provider, "completion": f.completion, "consult_timeout": "30s"}
	if f.provider == "netsapiens" {
		r["call"] = map[string]string{"domain": nsDomain, "user": pl.user}
		r["target"] = nsTarget
		return r
	}
	r["mode"] = f.mode
	r["target"] = bwTarget
	call := map[string]string{"call_id": pl.a}
	if f.mode == "attended" {
		call["agent_call_id"] = pl.g
	}
	r["call"] = call
	return r
}

// verdict is what the simulator says about a finished transfer.
type verdict struct {
	completed bool // transferd says completed
	restored  bool // transferd's outcome.caller_restored
	// What the simulator shows.
	held         bool // the caller is up and on hold
	orphans      int  // consult legs left up that do not carry the caller
	consultCalls int  // consult calls transferd asked the provider to create
	problems     []string
}

func (v *verdict) problem(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

// check compares the terminal transfer with the simulator's state.
func check(ctx context.Context, f flow, pl placed, tr *transfer) (verdict, error) {
	v := verdict{completed: tr.State == "completed"}
	switch {
	case !tr.terminal():
		v.problem("transfer is %s, not terminal", tr.State)
		return v, nil
	case tr.State != "completed" && tr.Outcome == nil:
		v.problem("terminal transfer %s has no outcome", tr.State)
		return v, nil
	}
	if tr.Outcome != nil {
		v.restored = tr.Outcome.CallerRestored
	}
	if err := simIdle(ctx); err != nil {
		return v, err
	}
	switch {
	case f.provider == "netsapiens":
		return v, checkNetSapiens(ctx, pl, tr, &v)
	case f.mode == "attended":
		return v, checkBandwidthAttended(ctx, pl, tr, &v)
	default:
		return v, checkBandwidthAnnounced(ctx, pl, tr, &v)
	}
}

func checkNetSapiens(ctx context.Context, pl placed, tr *transfer, v *verdict) error {
	var live []nssim.ActiveCall
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/calls", nil, &live); err != nil {
		return err
	}
	var requests []nssim.Request
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/requests", nil, &requests); err != nil {
		return err
	}
	callerID, agentID := pl.session.OrigCallID, pl.session.TermCallID
	var caller *nssim.ActiveCall
	for i := range live {
		if live[i].OrigCallID == callerID || live[i].TermCallID == callerID {
			caller = &live[i]
		}
	}
	describe := func() string {
		b, _ := json.Marshal(live)
		return string(b)
	}
	if caller != nil && (caller.OrigInfo == nssim.InfoHeld || caller.TermInfo == nssim.InfoHeld) {
		v.held = true
		v.problem("the caller's session %s is held (orig %q, term %q)", caller.SessionID, caller.OrigInfo, caller.TermInfo)
	}
	active := caller != nil && caller.OrigInfo == nssim.InfoActive && caller.TermInfo == nssim.InfoActive
	// The caller's other party.
	var other, otherUser string
	if caller != nil {
		other, otherUser = caller.TermCallID, caller.TermUser
		if caller.TermCallID == callerID {
			other, otherUser = caller.OrigCallID, caller.OrigUser
		}
	}
	switch {
	case caller == nil:
		v.problem("the caller's call %s is gone; ended sessions: %s", callerID, endedNetSapiens(ctx))
	case v.completed:
		if otherUser != nsTarget || !active {
			v.problem("transfer completed but the caller's session is with %q (%s), infos %q/%q; live: %s",
				otherUser, other, caller.OrigInfo, caller.TermInfo, describe())
		}
	default:
		if !v.restored {
			v.problem("outcome.caller_restored is false, but nothing in this flow may end the caller's call")
		}
		if other != agentID || otherUser != pl.user || !active {
			v.problem("transfer %s but the caller is with %q (%s), not the agent %s (%s), infos %q/%q; live: %s",
				tr.State, otherUser, other, pl.user, agentID, caller.OrigInfo, caller.TermInfo, describe())
		}
	}
	// Every live session but the caller's is left over. The consult call
	// carries transferd's call-id on its agent (orig) leg; when it merged
	// into the caller's session its target leg moved there and it ended.
	consultID := netsapiens.ConsultCallID(tr.ID)
	for _, s := range live {
		if caller != nil && s.SessionID == caller.SessionID {
			continue
		}
		if s.OrigCallID == consultID || s.ByCallID == consultID {
			v.orphans++
			v.problem("orphan consult session %s (call-orig-call-id %s, infos %q/%q)", s.SessionID, s.OrigCallID, s.OrigInfo, s.TermInfo)
		} else {
			v.problem("unexpected live session %s (%s -> %s)", s.SessionID, s.OrigCallID, s.TermCallID)
		}
	}
	createPath := "/domains/" + nsDomain + "/users/" + pl.user + "/calls"
	for _, r := range requests {
		if r.Method == http.MethodPost && r.Path == createPath {
			v.consultCalls++
		}
	}
	return nil
}

// endedNetSapiens describes the ended sessions, for failure messages.
func endedNetSapiens(ctx context.Context) string {
	var ended []nssim.EndedSession
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/ended", nil, &ended); err != nil {
		return err.Error()
	}
	var parts []string
	for _, e := range ended {
		parts = append(parts, fmt.Sprintf("%s (%s -> %s): %s %s", e.Call.SessionID, e.Call.OrigCallID, e.Call.TermCallID, e.Reason, e.Detail))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// bandwidthState is what the Bandwidth simulator shows.
type bandwidthState struct {
	calls    []bwsim.Call
	byID     map[string]bwsim.Call
	caller   bwsim.Connections
	requests []bwsim.Request
}

func readBandwidth(ctx context.Context, a string) (bandwidthState, error) {
	var st bandwidthState
	if err := sim(ctx, http.MethodGet, pbxsim.BandwidthControlPath+"/calls", nil, &st.calls); err != nil {
		return st, err
	}
	st.byID = map[string]bwsim.Call{}
	for _, c := range st.calls {
		st.byID[c.ID] = c
	}
	if err := sim(ctx, http.MethodGet, pbxsim.BandwidthControlPath+"/calls/"+a+"/connections", nil, &st.caller); err != nil {
		return st, err
	}
	err := sim(ctx, http.MethodGet, pbxsim.BandwidthControlPath+"/requests", nil, &st.requests)
	return st, err
}

func (st bandwidthState) describe() string {
	var parts []string
	for _, c := range st.calls {
		parts = append(parts, fmt.Sprintf("%s %s->%s %s/%s bridge %q", c.ID, c.From, c.To, c.State, c.Cause, c.BridgeID))
	}
	return fmt.Sprintf("caller held %v connected to %v; calls [%s]", st.caller.Held, st.caller.ConnectedTo, strings.Join(parts, "; "))
}

func live(c bwsim.Call) bool {
	return c.State == bwsim.StateActive || c.State == bwsim.StateTransferring
}

// consultLegs are the calls to the target: the attended consult calls or
// the announced transfer's B-legs. Each must have ended, unless it
// carries the caller.
func (st bandwidthState) countOrphans(v *verdict) {
	for _, c := range st.calls {
		if c.Direction != bwsim.DirectionOut || c.To != bwTarget || c.Ended() {
			continue
		}
		if live(c) && slices.Contains(st.caller.ConnectedTo, c.ID) {
			continue
		}
		v.orphans++
		v.problem("orphan consult call %s (%s, bridge %q)", c.ID, c.State, c.BridgeID)
	}
}

func checkBandwidthAttended(ctx context.Context, pl placed, tr *transfer, v *verdict) error {
	st, err := readBandwidth(ctx, pl.a)
	if err != nil {
		return err
	}
	a := st.byID[pl.a]
	if live(a) && st.caller.Held {
		v.held = true
		v.problem("the caller's call %s is held: %s", pl.a, st.describe())
	}
	toTarget := slices.ContainsFunc(st.caller.ConnectedTo, func(id string) bool { return st.byID[id].To == bwTarget })
	switch {
	case !live(a):
		v.problem("the caller's call %s is %s (%s): %s", pl.a, a.State, a.Cause, st.describe())
	case v.completed:
		if !toTarget || st.caller.Held {
			v.problem("transfer completed but the caller is not connected to the target: %s", st.describe())
		}
	default:
		if !v.restored {
			v.problem("outcome.caller_restored is false, but nothing in this flow may end the caller's call")
		}
		if !slices.Contains(st.caller.ConnectedTo, pl.g) || st.caller.Held {
			v.problem("transfer %s but the caller is not back with the agent %s: %s", tr.State, pl.g, st.describe())
		}
	}
	st.countOrphans(v)
	for _, r := range st.requests {
		if r.Method == http.MethodPost && r.Path == "/users/"+pbxsim.DemoBandwidthUser+"/calls" {
			v.consultCalls++
		}
	}
	return nil
}

func checkBandwidthAnnounced(ctx context.Context, pl placed, tr *transfer, v *verdict) error {
	st, err := readBandwidth(ctx, pl.a)
	if err != nil {
		return err
	}
	a := st.byID[pl.a]
	if live(a) && st.caller.Held {
		v.held = true
		v.problem("the caller's call %s is held: %s", pl.a, st.describe())
	}
	toTarget := slices.ContainsFunc(st.caller.ConnectedTo, func(id string) bool { return st.byID[id].To == bwTarget })
	switch {
	case v.completed:
		if !live(a) || !toTarget {
			v.problem("transfer completed but the caller is not connected to the target: %s", st.describe())
		}
	case !live(a):
		// The platform ends the caller's call when the transfer's B-leg
		// fails: the outcome must say so.
		if v.restored {
			v.problem("outcome.caller_restored is true but the caller's call %s is %s (%s)", pl.a, a.State, a.Cause)
		}
	default:
		back := a.State == bwsim.StateActive && !st.caller.Held && len(st.caller.ConnectedTo) == 0
		if v.restored != back {
			v.problem("outcome.caller_restored is %v but the caller's call is %s: %s", v.restored, a.State, st.describe())
		}
	}
	st.countOrphans(v)
	for _, r := range st.requests {
		if r.Method != http.MethodPost || r.Path != "/users/"+pbxsim.DemoBandwidthUser+"/calls/"+pl.a {
			continue
		}
		var body struct {
			State string `json:"state"`
		}
		if json.Unmarshal([]byte(r.Body), &body) == nil && body.State == "transferring" {
			v.consultCalls++
		}
	}
	return nil
}
