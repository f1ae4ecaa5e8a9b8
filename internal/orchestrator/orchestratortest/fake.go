// Package orchestratortest provides test doubles for packages that drive or
// serve the orchestrator. Fake is an in-memory telephony provider: it models
// the caller's call, hold, the consult leg and the join per transfer, lets a
// test script the target and the caller, and fails on demand at every
// provider method.
//
// Nothing in the Fake sleeps or runs on its own: the call state changes only
// when the engine calls a method or the test calls Answer, HangupTarget or
// HangupCaller. Tests wait for the engine with Engine.Wait.
package orchestratortest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Provider method names, as recorded by Calls and accepted by FailOn,
// LoseResponse, Before and Block (and, for the actions, Defer).
const (
	MethodLocate        = "Locate"
	MethodHold          = "Hold"
	MethodUnhold        = "Unhold"
	MethodDial          = "Dial"
	MethodObserve       = "Observe"
	MethodComplete      = "Complete"
	MethodHangupConsult = "HangupConsult"
	// MethodHangupAgent is orchestrator.AgentHanger's, called only for a
	// flow set with HangupAgent (SetFlow).
	MethodHangupAgent = "HangupAgent"
)

var methods = []string{MethodLocate, MethodHold, MethodUnhold, MethodDial,
	MethodObserve, MethodComplete, MethodHangupConsult, MethodHangupAgent}

// Target scripts how the transfer target treats the consult call. It is
// read when the consult leg is dialled.
type Target uint8

const (
	// TargetAnswers answers as soon as it is dialled (the default).
	TargetAnswers Target = iota
	// TargetRings rings until the test calls Answer or HangupTarget, or the
	// engine gives up (consult_timeout) and hangs the leg up. It models both
	// "never answers" and "answers on demand".
	TargetRings
	// TargetBusy: the provider reports the consult ended, busy.
	TargetBusy
	// TargetRejects: the target declines; the consult ends, rejected.
	TargetRejects
	// TargetNoAnswer: the provider's own ring timeout ends the consult,
	// no_answer.
	TargetNoAnswer
	// TargetVanishes: the target is busy or rejects, and the provider drops
	// the consult leg before any reading lists it, as a NetSapiens PBX may:
	// readings show the consult absent, never ringing and never ended.
	TargetVanishes
)

// Busy, rejected and no-answer consults are seen ringing on Dial and ended
// on the next reading.
func (t Target) endReason() orchestrator.Reason {
	switch t {
	case TargetBusy:
		return orchestrator.ReasonBusy
	case TargetRejects:
		return orchestrator.ReasonRejected
	case TargetNoAnswer:
		return orchestrator.ReasonNoAnswer
	}
	return ""
}

// Record is one provider call as the Fake received it.
type Record struct {
	Method     string
	TransferID string
}

// Call is the Fake's view of one transfer's calls.
type Call struct {
	Caller    orchestrator.CallerState
	Consult   orchestrator.ConsultState
	EndReason orchestrator.Reason
	// Announced is true when the leg was dialled for a flow without an
	// explicit join: the provider connects caller and target itself.
	Announced bool
	Legs      orchestrator.Legs
	// Dials counts the consult legs the provider created for the transfer:
	// more than one only when DuplicateDials is on and Dial was repeated.
	Dials int
}

type call struct {
	Call
	n          int
	target     Target
	pendingEnd orchestrator.Reason // ends a ringing consult on the next Observe
	hidden     int                 // readings left that show the consult absent
	deferred   []func()            // accepted actions not applied yet; see Defer
	// heldWithTarget: a hold landed after the join; Caller shows held.
	heldWithTarget bool
}

// withTarget reports whether the caller is with the target, held or not.
func (c *call) withTarget() bool {
	return c.Caller == orchestrator.CallerTransferred || c.heldWithTarget
}

type fault struct {
	err   error
	left  int  // calls left; < 0 forever
	after bool // the effect happens, the response is lost
}

// Fake is an in-memory orchestrator.Provider. It is safe for concurrent use
// and keeps the calls of every transfer apart, keyed by transfer id, so one
// Fake can serve many transfers. The zero value is not usable; call NewFake.
type Fake struct {
	name string

	mu             sync.Mutex
	caps           orchestrator.Capabilities
	flow           orchestrator.Flow
	required       []string
	target         Target
	ignoreComplete bool
	faults         map[string][]*fault
	defers         map[string]int // calls left to defer per method; < 0 every call
	duplicates     bool
	hooks          map[string][]func(Record)
	gates          map[string]*Gate
	recording      bool
	records        []Record
	calls          map[string]*call
	seq            int
}

var _ orchestrator.Provider = (*Fake)(nil)

// NewFake returns a provider called name that supports attended transfers
// with hold and join, and announced transfers, whose targets answer at once.
func NewFake(name string) *Fake {
	return &Fake{
		name:      name,
		caps:      orchestrator.Capabilities{Attended: true, Announced: true},
		flow:      orchestrator.Flow{Hold: true, Join: true},
		faults:    map[string][]*fault{},
		defers:    map[string]int{},
		hooks:     map[string][]func(Record){},
		gates:     map[string]*Gate{},
		recording: true,
		calls:     map[string]*call{},
	}
}

// --- configuration ---

// SetCapabilities replaces the declared capabilities.
func (f *Fake) SetCapabilities(c orchestrator.Capabilities) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caps = c
	return f
}

// SetFlow sets the steps of attended requests. Announced requests always get
// the zero Flow (no hold, no join).
func (f *Fake) SetFlow(fl orchestrator.Flow) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flow = fl
	return f
}

// AnnouncedOnly makes the Fake a provider that only hands calls over with
// its own transfer primitive: capability Announced alone and no hold or join
// in any flow. Requests must ask for mode "announced".
func (f *Fake) AnnouncedOnly() *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caps = orchestrator.Capabilities{Announced: true}
	f.flow = orchestrator.Flow{}
	return f
}

// SetTarget scripts the target of consult legs dialled from now on.
func (f *Fake) SetTarget(t Target) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = t
	return f
}

// IgnoreComplete makes Complete succeed without joining anything, as
// NetSapiens does when the transfer is addressed wrongly: the engine's
// verification must catch it.
func (f *Fake) IgnoreComplete(on bool) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ignoreComplete = on
	return f
}

var fieldOf = map[string]func(r *orchestrator.Request) string{
	"call.domain":        func(r *orchestrator.Request) string { return r.Call.Domain },
	"call.user":          func(r *orchestrator.Request) string { return r.Call.User },
	"call.call_id":       func(r *orchestrator.Request) string { return r.Call.CallID },
	"call.agent_call_id": func(r *orchestrator.Request) string { return r.Call.AgentCallID },
	"caller_id":          func(r *orchestrator.Request) string { return r.CallerID },
}

// Require makes Validate report each of fields ("call.domain", "call.user",
// "call.call_id", "call.agent_call_id", "caller_id") when it is empty.
// It replaces any earlier set; Require() requires nothing.
func (f *Fake) Require(fields ...string) *Fake {
	for _, p := range fields {
		if fieldOf[p] == nil {
			panic(fmt.Sprintf("orchestratortest: Require: unknown field %q", p))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.required = slices.Clone(fields)
	return f
}

// FailOn makes the next times calls of method return err without any
// effect; times < 0 fails every call from now on. Faults queue per method in
// the order they are added. err is returned as is, so it is usually an
// *orchestrator.Error such as
//
//	orchestrator.E("fake.Hold", orchestrator.KindProviderUnavailable, errors.New("503"))
func (f *Fake) FailOn(method string, err error, times int) *Fake {
	return f.addFault(method, &fault{err: err, left: times})
}

// LoseResponse makes the next times calls of method take effect and then
// return err, as when the provider's response is lost; times < 0 means every
// call. Locate and Dial then return no ids.
func (f *Fake) LoseResponse(method string, err error, times int) *Fake {
	return f.addFault(method, &fault{err: err, left: times, after: true})
}

func (f *Fake) addFault(method string, ft *fault) *Fake {
	mustMethod(method)
	if ft.err == nil {
		panic("orchestratortest: a fault needs an error")
	}
	if ft.left == 0 {
		return f
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = append(f.faults[method], ft)
	return f
}

// Defer makes the next times calls of method (an action: Hold, Unhold,
// Dial, Complete or HangupConsult) succeed at once, with the response
// they would have had, but take effect only when the test calls
// ApplyDeferred, as a PBX that answers 202 and applies the action later
// does; times < 0 defers every call from now on. A deferred Dial is
// neither listed nor found by HangupConsult until it is applied; an
// action never applied models one the provider accepted and then lost.
func (f *Fake) Defer(method string, times int) *Fake {
	switch method {
	case MethodHold, MethodUnhold, MethodDial, MethodComplete, MethodHangupConsult:
	default:
		panic(fmt.Sprintf("orchestratortest: Defer: %q is not an action", method))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.defers[method] = times
	return f
}

// ApplyDeferred applies the deferred actions of transfer id, in the order
// they were accepted, and returns how many it applied.
func (f *Fake) ApplyDeferred(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[id]
	if c == nil {
		return 0
	}
	n := len(c.deferred)
	for _, apply := range c.deferred {
		apply()
	}
	c.deferred = nil
	return n
}

// Deferred returns how many actions of transfer id wait for ApplyDeferred.
func (f *Fake) Deferred(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.calls[id]; c != nil {
		return len(c.deferred)
	}
	return 0
}

// DuplicateDials makes Dial create a new consult leg every time it is
// called, as a PBX that accepts a duplicate call-id does, instead of
// returning the leg already dialled. Call.Dials counts them.
func (f *Fake) DuplicateDials(on bool) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.duplicates = on
	return f
}

// SetCaller scripts what the provider shows of transfer id's caller, as
// when the agent takes the caller off hold on their phone. It returns
// false when the Fake does not know id.
func (f *Fake) SetCaller(id string, s orchestrator.CallerState) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[id]
	if c == nil {
		return false
	}
	c.Caller = s
	return true
}

// ClearFaults removes every pending fault.
func (f *Fake) ClearFaults() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.faults)
}

// Before runs fn at the start of every call of method (every method when
// method is ""), after the call is recorded and before any fault or effect.
// fn runs in the engine's goroutine without the Fake's lock held, so it may
// call the Fake (HangupCaller, Answer, …) to script what happens mid-step.
func (f *Fake) Before(method string, fn func(Record)) *Fake {
	if method != "" {
		mustMethod(method)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks[method] = append(f.hooks[method], fn)
	return f
}

// Block makes calls of method wait, after recording and Before hooks, until
// the returned gate is released or the call's context ends (then the call
// fails with KindTimeout or KindProviderUnavailable and has no effect).
func (f *Fake) Block(method string) *Gate {
	mustMethod(method)
	g := &Gate{entered: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gates[method] = g
	return g
}

// Gate holds calls of one method; see Fake.Block.
type Gate struct {
	entered     chan struct{}
	enteredOnce sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

// Entered is closed when the first call reaches the gate.
func (g *Gate) Entered() <-chan struct{} { return g.entered }

// Release lets every held and future call through. It is idempotent.
func (g *Gate) Release() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *Gate) wait(ctx context.Context, op string) error {
	g.enteredOnce.Do(func() { close(g.entered) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctxError(op, ctx.Err())
	}
}

// SetRecording turns the call log on (the default) or off; benchmarks turn
// it off so that it does not grow.
func (f *Fake) SetRecording(on bool) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recording = on
	return f
}

func mustMethod(m string) {
	if !slices.Contains(methods, m) {
		panic(fmt.Sprintf("orchestratortest: unknown provider method %q", m))
	}
}

// --- the test's view ---

// Records returns every call received, in order.
func (f *Fake) Records() []Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.records)
}

// Calls returns the method of every call received, in order, e.g.
// ["Locate" "Hold" "Dial" "Observe" "Complete" "Observe"].
func (f *Fake) Calls() []string { return methodsOf(f.Records(), "", true) }

// Actions is Calls without "Observe": the calls that can change something.
func (f *Fake) Actions() []string { return methodsOf(f.Records(), "", false) }

// CallsFor is Calls for one transfer.
func (f *Fake) CallsFor(id string) []string { return methodsOf(f.Records(), id, true) }

// ActionsFor is Actions for one transfer.
func (f *Fake) ActionsFor(id string) []string { return methodsOf(f.Records(), id, false) }

func methodsOf(rs []Record, id string, observe bool) []string {
	out := []string{}
	for _, r := range rs {
		if (id == "" || r.TransferID == id) && (observe || r.Method != MethodObserve) {
			out = append(out, r.Method)
		}
	}
	return out
}

// ResetCalls forgets the call log.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = nil
}

// State returns the Fake's view of a transfer's calls; ok is false before
// the engine touched the transfer.
func (f *Fake) State(id string) (c Call, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cl := f.calls[id]; cl != nil {
		return cl.Call, true
	}
	return Call{}, false
}

// --- scripting the parties ---

// Answer makes ringing targets answer: the given transfers', or every
// transfer's when no id is given. It returns how many answered. In an
// announced flow the provider then connects caller and target.
func (f *Fake) Answer(ids ...string) int {
	return f.each(ids, func(c *call) bool {
		if c.Consult != orchestrator.ConsultRinging || c.pendingEnd != "" {
			return false
		}
		c.Consult = orchestrator.ConsultAnswered
		if c.Announced && c.Caller != orchestrator.CallerGone {
			c.Caller = orchestrator.CallerTransferred
		}
		return true
	})
}

// HangupTarget makes targets hang up (given transfers, or all): a ringing
// consult ends rejected, an answered one target_hung_up; a caller already
// connected to the target is then gone too. It returns how many hung up.
func (f *Fake) HangupTarget(ids ...string) int {
	return f.each(ids, func(c *call) bool {
		switch c.Consult {
		case orchestrator.ConsultRinging:
			c.EndReason = orchestrator.ReasonRejected
		case orchestrator.ConsultAnswered:
			c.EndReason = orchestrator.ReasonTargetHungUp
		default:
			return false
		}
		c.Consult, c.pendingEnd = orchestrator.ConsultEnded, ""
		if c.withTarget() {
			c.Caller, c.heldWithTarget = orchestrator.CallerGone, false
		}
		return true
	})
}

// HangupCaller makes callers hang up (given transfers, or all). In an
// announced flow the leg to the target ends with them. It returns how many
// hung up.
func (f *Fake) HangupCaller(ids ...string) int {
	return f.each(ids, func(c *call) bool {
		if c.Caller == orchestrator.CallerGone {
			return false
		}
		if (c.Announced || c.withTarget()) &&
			(c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered) {
			c.Consult, c.pendingEnd = orchestrator.ConsultEnded, ""
		}
		c.Caller, c.heldWithTarget = orchestrator.CallerGone, false
		return true
	})
}

func (f *Fake) each(ids []string, fn func(*call) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(f.calls))
	}
	for _, id := range ids {
		if c := f.calls[id]; c != nil && fn(c) {
			n++
		}
	}
	return n
}

// --- orchestrator.Provider ---

// Name implements orchestrator.Provider.
func (f *Fake) Name() string { return f.name }

// Capabilities implements orchestrator.Provider.
func (f *Fake) Capabilities() orchestrator.Capabilities {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caps
}

// Validate implements orchestrator.Provider: every field given to Require
// must be set.
func (f *Fake) Validate(r *orchestrator.Request) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bad map[string]string
	for _, p := range f.required {
		if fieldOf[p](r) == "" {
			if bad == nil {
				bad = map[string]string{}
			}
			bad[p] = "is required by provider " + f.name
		}
	}
	return bad
}

// Flow implements orchestrator.Provider.
func (f *Fake) Flow(r *orchestrator.Request) orchestrator.Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flowLocked(r)
}

func (f *Fake) flowLocked(r *orchestrator.Request) orchestrator.Flow {
	if r.Mode == orchestrator.ModeAnnounced {
		return orchestrator.Flow{}
	}
	return f.flow
}

// Locate implements orchestrator.Provider: the caller's call is found while
// it is connected to the agent.
func (f *Fake) Locate(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	var legs orchestrator.Legs
	err := f.do(ctx, MethodLocate, t, func(op string, c *call, t *orchestrator.Transfer) error {
		switch c.Caller {
		case orchestrator.CallerGone:
			return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("no call for %q", t.Request.Call.User))
		case orchestrator.CallerConnected:
		default:
			return orchestrator.E(op, orchestrator.KindCallNotActive, errors.New("the call is not connected to the agent"))
		}
		c.Legs.Caller = orchestrator.LegRef{CallID: fmt.Sprintf("%s-caller-%d", f.name, c.n), SessionID: fmt.Sprintf("%s-session-%d", f.name, c.n)}
		c.Legs.Agent = orchestrator.LegRef{CallID: fmt.Sprintf("%s-agent-%d", f.name, c.n)}
		legs = c.Legs
		return nil
	})
	if err != nil {
		return orchestrator.Legs{}, err
	}
	return legs, nil
}

// callerLeg checks that the engine addresses the located caller.
func callerLeg(op string, c *call, t *orchestrator.Transfer) error {
	if c.Legs.Caller.IsZero() || t.Legs.Caller != c.Legs.Caller {
		return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("no call %q", t.Legs.Caller.CallID))
	}
	if c.Caller == orchestrator.CallerGone {
		return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("call %q has ended", t.Legs.Caller.CallID))
	}
	return nil
}

// Hold implements orchestrator.Provider.
func (f *Fake) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	return f.do(ctx, MethodHold, t, func(op string, c *call, t *orchestrator.Transfer) error {
		if err := callerLeg(op, c, t); err != nil {
			return err
		}
		switch c.Caller {
		case orchestrator.CallerConnected, orchestrator.CallerHeld:
			c.Caller = orchestrator.CallerHeld
			return nil
		case orchestrator.CallerTransferred:
			// A hold accepted before the join and applied after it holds
			// the caller's call, now with the target, as a PBX may (nssim
			// does): readings show the caller held.
			c.Caller, c.heldWithTarget = orchestrator.CallerHeld, true
			return nil
		}
		return orchestrator.E(op, orchestrator.KindCallNotActive, errors.New("the caller is not connected to the agent"))
	})
}

// Unhold implements orchestrator.Provider; unholding a caller that is not
// held is success.
func (f *Fake) Unhold(ctx context.Context, t *orchestrator.Transfer) error {
	return f.do(ctx, MethodUnhold, t, func(op string, c *call, t *orchestrator.Transfer) error {
		if err := callerLeg(op, c, t); err != nil {
			return err
		}
		switch {
		case c.heldWithTarget:
			c.Caller, c.heldWithTarget = orchestrator.CallerTransferred, false
			return nil
		case c.Caller == orchestrator.CallerHeld, c.Caller == orchestrator.CallerConnected:
			c.Caller = orchestrator.CallerConnected
			return nil
		}
		return orchestrator.E(op, orchestrator.KindCallNotActive, errors.New("the caller is connected to someone else"))
	})
}

// Dial implements orchestrator.Provider. Dialling again returns the leg
// already dialled, as an adapter that reads the provider's state first does,
// unless DuplicateDials is on.
func (f *Fake) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	err := f.do(ctx, MethodDial, t, func(op string, c *call, t *orchestrator.Transfer) error {
		if c.Consult != orchestrator.ConsultAbsent && !f.duplicates {
			return nil
		}
		c.Announced = !f.flowLocked(&t.Request).Join
		if c.Announced {
			if err := callerLeg(op, c, t); err != nil {
				return err
			}
		}
		if t.Request.Target == "" {
			return orchestrator.E(op, orchestrator.KindProviderRejected, errors.New("no destination"))
		}
		c.target = f.target
		c.Dials++
		c.Legs.Consult = orchestrator.LegRef{CallID: fmt.Sprintf("%s-consult-%d", f.name, c.n), SessionID: fmt.Sprintf("%s-consult-session-%d", f.name, c.n)}
		if c.Dials > 1 {
			c.Legs.Consult.SessionID += fmt.Sprintf("-%d", c.Dials)
		}
		c.Consult = orchestrator.ConsultRinging
		c.pendingEnd = c.target.endReason()
		switch c.target {
		case TargetAnswers:
			c.Consult = orchestrator.ConsultAnswered
			if c.Announced {
				c.Caller = orchestrator.CallerTransferred
			}
		case TargetVanishes:
			c.Consult = orchestrator.ConsultAbsent
		}
		return nil
	})
	if err != nil {
		return orchestrator.LegRef{}, err
	}
	// The effect may be deferred: the answer is the ids it gave.
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[t.ID].Legs.Consult, nil
}

// WatchKey implements orchestrator.Provider: one view serves every
// transfer.
func (f *Fake) WatchKey(*orchestrator.Transfer) string { return "" }

// Read implements orchestrator.Provider: it observes every transfer in ts,
// recording one MethodObserve call (and applying its faults) per transfer,
// so that a fault on MethodObserve makes that transfer's part of the
// reading fail. A busy, rejecting or unanswering target is seen ringing
// until the first reading after Dial. A consult hidden by HideConsult, or
// dialled by a deferred Dial not applied yet, reads absent.
func (f *Fake) Read(ctx context.Context, _ string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	v := fakeView{}
	for _, t := range ts {
		var obs orchestrator.Observation
		err := f.do(ctx, MethodObserve, t, func(op string, c *call, t *orchestrator.Transfer) error {
			if c.Consult == orchestrator.ConsultRinging && c.pendingEnd != "" {
				c.Consult, c.EndReason, c.pendingEnd = orchestrator.ConsultEnded, c.pendingEnd, ""
			}
			obs = orchestrator.Observation{Caller: c.Caller, Consult: c.Consult, EndReason: c.EndReason}
			if c.Consult == orchestrator.ConsultEnded && c.EndReason != "" {
				obs.Detail = "the consult call ended: " + string(c.EndReason)
			}
			if c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered {
				// A listed leg reveals its ids, as NetSapiens shows the
				// consult's session only once the call exists.
				obs.ConsultLegs, obs.ConsultLeg = 1, c.Legs.Consult
				if c.hidden > 0 {
					c.hidden--
					obs.Consult, obs.ConsultLegs, obs.ConsultLeg = orchestrator.ConsultAbsent, 0, orchestrator.LegRef{}
				}
			}
			return nil
		})
		v[t.ID] = fakeReading{obs, err}
	}
	return v, nil
}

type fakeReading struct {
	obs orchestrator.Observation
	err error
}

// fakeView is one Read: each transfer's observation or error.
type fakeView map[string]fakeReading

func (v fakeView) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	r, ok := v[t.ID]
	if !ok {
		return orchestrator.Observation{}, orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable,
			errors.New("the transfer was not part of this reading"))
	}
	return r.obs, r.err
}

// HideConsult makes the next n readings of transfer id show its consult
// absent although it exists, as a provider that lists a new call only
// after a while does. It returns false when the Fake does not know id.
func (f *Fake) HideConsult(id string, n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[id]
	if c == nil {
		return false
	}
	c.hidden = n
	return true
}

// Complete implements orchestrator.Provider: it joins the held caller to
// the answered target.
func (f *Fake) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	return f.do(ctx, MethodComplete, t, func(op string, c *call, t *orchestrator.Transfer) error {
		if f.ignoreComplete {
			return nil // accepted, no effect
		}
		if err := callerLeg(op, c, t); err != nil {
			return err
		}
		if c.Legs.Consult.IsZero() || t.Legs.Consult != c.Legs.Consult {
			return orchestrator.E(op, orchestrator.KindCallNotFound, fmt.Errorf("no consult call %q", t.Legs.Consult.CallID))
		}
		switch {
		case c.withTarget():
			return nil
		case c.Consult != orchestrator.ConsultAnswered:
			return orchestrator.E(op, orchestrator.KindCallNotActive, errors.New("the consult call is not answered"))
		}
		c.Caller = orchestrator.CallerTransferred
		return nil
	})
}

// HangupConsult implements orchestrator.Provider. It finds the consult leg
// itself (the engine may not know its ids after a lost Dial response); an
// absent or ended leg is success. Hanging up a leg that carries the caller
// drops the caller.
func (f *Fake) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	return f.do(ctx, MethodHangupConsult, t, func(op string, c *call, t *orchestrator.Transfer) error {
		switch c.Consult {
		case orchestrator.ConsultRinging, orchestrator.ConsultAnswered:
			c.Consult, c.pendingEnd = orchestrator.ConsultEnded, ""
			if c.withTarget() {
				c.Caller, c.heldWithTarget = orchestrator.CallerGone, false
			}
		}
		return nil
	})
}

// do records the call, runs hooks and gates, applies the first queued
// fault, and otherwise runs effect on the transfer's calls under the lock.
// HangupAgent implements orchestrator.AgentHanger. The Fake does not
// model the agent's call: it records the action (and its hooks, gates
// and faults apply).
func (f *Fake) HangupAgent(ctx context.Context, t *orchestrator.Transfer) error {
	return f.do(ctx, MethodHangupAgent, t, func(string, *call, *orchestrator.Transfer) error { return nil })
}

func (f *Fake) do(ctx context.Context, method string, t *orchestrator.Transfer, effect func(op string, c *call, t *orchestrator.Transfer) error) error {
	op := "fake." + method
	rec := Record{Method: method, TransferID: t.ID}
	orchestrator.CountSend(ctx)
	f.mu.Lock()
	if f.recording {
		f.records = append(f.records, rec)
	}
	hooks := slices.Concat(f.hooks[""], f.hooks[method])
	gate := f.gates[method]
	f.mu.Unlock()

	for _, h := range hooks {
		h(rec)
	}
	if gate != nil {
		if err := gate.wait(ctx, op); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return ctxError(op, err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.callLocked(t.ID)
	ft := f.takeFault(method)
	if ft != nil && !ft.after {
		return ft.err
	}
	if f.takeDefer(method) {
		// Answer as the action would, from a scratch copy of the calls,
		// and apply it to the real ones later, with the record as it was
		// sent (the engine goes on changing its own).
		scratch := *c
		if err := effect(op, &scratch, t); err != nil {
			return err
		}
		sent := t.Clone()
		c.deferred = append(c.deferred, func() { _ = effect(op, c, sent) })
		if method == MethodDial {
			// The ids are the provider's answer; the leg itself is not
			// there until the dial is applied.
			c.Legs.Consult = scratch.Legs.Consult
		}
	} else if err := effect(op, c, t); err != nil {
		return err
	}
	if ft != nil {
		return ft.err
	}
	return nil
}

func (f *Fake) takeDefer(method string) bool {
	n := f.defers[method]
	if n > 0 {
		f.defers[method] = n - 1
	}
	return n != 0
}

// callLocked returns the calls of transfer id; a transfer first seen has a
// caller talking to the agent.
func (f *Fake) callLocked(id string) *call {
	c := f.calls[id]
	if c == nil {
		f.seq++
		c = &call{Call: Call{Caller: orchestrator.CallerConnected}, n: f.seq}
		f.calls[id] = c
	}
	return c
}

func (f *Fake) takeFault(method string) *fault {
	q := f.faults[method]
	if len(q) == 0 {
		return nil
	}
	ft := q[0]
	if ft.left > 0 {
		ft.left--
		if ft.left == 0 {
			f.faults[method] = q[1:]
		}
	}
	return ft
}

func ctxError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return orchestrator.E(op, orchestrator.KindTimeout, err)
	}
	return orchestrator.E(op, orchestrator.KindProviderUnavailable, err)
}
