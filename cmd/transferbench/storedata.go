package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The store scenario's history: what transferd leaves behind after weeks
// of attended transfers, so that lists and the purge work on rows like
// the real ones (record sizes, events, spread of tenants, providers,
// states, calls and targets).
const (
	// retention is the age past which a closed transfer is purged.
	retention = 30 * 24 * time.Hour
	// history spans the stored transfers: the oldest tenth is older than
	// retention.
	history = retention * 10 / 9
)

// benchTenants are the tenants' shares of the history: the API's lists
// are scoped to one tenant, the default one here (half of the rows).
var benchTenants = []string{orchestrator.DefaultTenant, orchestrator.DefaultTenant, orchestrator.DefaultTenant,
	orchestrator.DefaultTenant, orchestrator.DefaultTenant, "acme", "acme", "acme", "globex", "globex"}

// benchTransfer is the i-th newest of n stored transfers, created at an
// even spread over history before now. One in 100 of those younger than
// retention is open (consulting, of the default tenant); the others are
// finished: 85 % completed, 9 % failed, 6 % cancelled. A finished transfer
// carries the steps, legs, outcome and events the engine writes (a
// completed attended transfer: six steps, eight events each holding the
// record, as the store writes them). Version counts the saves.
func benchTransfer(i, n int, now time.Time) *orchestrator.Transfer {
	rnd := rand.New(rand.NewPCG(uint64(i), 0x7ea5))
	at := now.Add(-time.Duration(float64(history) * float64(i) / float64(n)))
	old := now.Sub(at) > retention
	open := i%100 == 0 && !old
	tenant := benchTenants[i%len(benchTenants)]
	if open {
		tenant = orchestrator.DefaultTenant
	}
	t := &orchestrator.Transfer{ID: orchestrator.NewID(at), Tenant: tenant, CreatedAt: at, Owner: "transferd-0",
		RequestID: fmt.Sprintf("req_%016x", rnd.Uint64())}
	r := &t.Request
	r.Mode, r.Completion, r.ConsultTimeout = orchestrator.ModeAttended, orchestrator.CompletionAuto, 30*time.Second
	if rnd.IntN(4) == 0 {
		r.Completion = orchestrator.CompletionManual
	}
	if i%3 == 0 && !open {
		r.Provider = "bandwidth"
		r.Call = orchestrator.CallRef{CallID: fmt.Sprintf("c-%08x-%04x-%04x-%012x", rnd.Uint32(), rnd.Uint32()&0xffff,
			rnd.Uint32()&0xffff, rnd.Uint64()&0xffffffffffff)}
		r.Call.AgentCallID = fmt.Sprintf("c-%08x-%04x-%04x-%012x", rnd.Uint32(), rnd.Uint32()&0xffff,
			rnd.Uint32()&0xffff, rnd.Uint64()&0xffffffffffff)
		r.Target = fmt.Sprintf("+1555%07d", rnd.IntN(10_000_000))
		r.CallerID = fmt.Sprintf("+1919%07d", rnd.IntN(10_000_000))
		t.Legs.Caller.CallID = r.Call.CallID
		t.Legs.Agent.CallID = r.Call.AgentCallID
		t.Legs.Consult.CallID = fmt.Sprintf("c-%08x-%04x-%04x-%012x", rnd.Uint32(), rnd.Uint32()&0xffff,
			rnd.Uint32()&0xffff, rnd.Uint64()&0xffffffffffff)
		t.Legs.Consult.BridgeID = fmt.Sprintf("br-%016x", rnd.Uint64())
	} else {
		r.Provider = "netsapiens"
		r.Call = orchestrator.CallRef{Domain: fmt.Sprintf("%s-%d.example.com", tenant, rnd.IntN(5)),
			User: fmt.Sprint(1000 + rnd.IntN(400))}
		if open {
			// One open transfer per agent: the call key is unique among
			// the active ones.
			r.Call.User = fmt.Sprint(100_000 + i/100)
		}
		r.Target = fmt.Sprint(2000 + rnd.IntN(300))
		t.Legs.Caller = orchestrator.LegRef{CallID: fmt.Sprintf("%x@pbx.example.com", rnd.Uint64()),
			SessionID: fmt.Sprintf("%x", rnd.Uint64()), Server: fmt.Sprintf("core%d", 1+rnd.IntN(3))}
		t.Legs.Agent.CallID = fmt.Sprintf("%x@pbx.example.com", rnd.Uint64())
		t.Legs.Consult.CallID = fmt.Sprintf("%x@pbx.example.com", rnd.Uint64())
	}
	if rnd.IntN(10) < 7 {
		r.ExternalID = fmt.Sprintf("crm-%d", 10_000_000+rnd.IntN(90_000_000))
		r.Metadata = map[string]string{"queue": []string{"sales", "support", "billing"}[rnd.IntN(3)],
			"ticket": fmt.Sprint(rnd.IntN(1_000_000))}
	}

	// The steps, each a few hundred milliseconds to seconds after the last.
	clock := at
	step := func(name string, status orchestrator.StepStatus, detail string, ev *orchestrator.Evidence) time.Time {
		start := clock.Add(time.Duration(5+rnd.IntN(50)) * time.Millisecond)
		clock = start.Add(time.Duration(50+rnd.IntN(900)) * time.Millisecond)
		t.Steps = append(t.Steps, orchestrator.Step{Name: name, Status: status, StartedAt: start, EndedAt: clock, Detail: detail,
			Evidence: ev})
		return start
	}
	var events []orchestrator.Event
	emit := func(typ orchestrator.EventType, from, to orchestrator.State) {
		t.EventSeq++
		events = append(events, orchestrator.Event{ID: fmt.Sprintf("evt_%s_%d", t.ID[len("tr_"):], t.EventSeq), Tenant: tenant,
			TransferID: t.ID, Seq: t.EventSeq, Type: typ, At: clock, From: from, To: to})
	}
	state := orchestrator.StatePending
	move := func(to orchestrator.State) {
		emit(orchestrator.EventStateChanged, state, to)
		state = to
	}
	emit(orchestrator.EventCreated, "", orchestrator.StatePending)
	step(orchestrator.StepLocate, orchestrator.StepSucceeded, "caller found", nil)
	t.Sent.Hold = step(orchestrator.StepHold, orchestrator.StepSucceeded, "", nil)
	t.Sent.HoldSends, t.Seen.Held = 1, true
	move(orchestrator.StateHolding)
	t.Sent.Dial = step(orchestrator.StepDial, orchestrator.StepSucceeded, "", nil)
	move(orchestrator.StateDialing)
	fate := rnd.IntN(100)
	switch {
	case open:
		step(orchestrator.StepAnswered, orchestrator.StepSucceeded, "", nil)
		t.Answered, t.Seen.Consult = true, true
		emit(orchestrator.EventTargetAnswered, state, state)
		move(orchestrator.StateConsulting)
		t.ConsultDeadline = at.Add(r.ConsultTimeout)
	case fate < 85:
		step(orchestrator.StepAnswered, orchestrator.StepSucceeded, "", nil)
		t.Answered, t.Seen.Consult = true, true
		emit(orchestrator.EventTargetAnswered, state, state)
		move(orchestrator.StateConsulting)
		t.Sent.Join = step(orchestrator.StepTransfer, orchestrator.StepSucceeded, "", nil)
		move(orchestrator.StateCompleting)
		step(orchestrator.StepVerify, orchestrator.StepSucceeded, "caller bridged to target", nil)
		move(orchestrator.StateCompleted)
		emit(orchestrator.EventCompleted, orchestrator.StateCompleting, orchestrator.StateCompleted)
		t.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonTransferred, Verified: true}
	case fate < 94:
		reason := []orchestrator.Reason{orchestrator.ReasonNoAnswer, orchestrator.ReasonBusy, orchestrator.ReasonRejected,
			orchestrator.ReasonTargetHungUp}[rnd.IntN(4)]
		ev := &orchestrator.Evidence{Status: 200, Code: "486", Message: "consult leg ended: " + string(reason)}
		t.Steps[len(t.Steps)-1].Status, t.Steps[len(t.Steps)-1].Evidence = orchestrator.StepFailed, ev
		t.Steps[len(t.Steps)-1].ErrKind = "consult_failed"
		t.Sent.Unhold = step(orchestrator.StepUnhold, orchestrator.StepSucceeded, "", nil)
		move(orchestrator.StateRecovering)
		move(orchestrator.StateFailed)
		emit(orchestrator.EventFailed, orchestrator.StateRecovering, orchestrator.StateFailed)
		t.Outcome = &orchestrator.Outcome{Reason: reason, CallerRestored: true, Verified: true, Detail: "the caller is back with the agent",
			Evidence: ev}
	default:
		t.Signal = orchestrator.SignalCancel
		t.Sent.Hangup = step(orchestrator.StepHangup, orchestrator.StepSucceeded, "", nil)
		t.Sent.Unhold = step(orchestrator.StepUnhold, orchestrator.StepSucceeded, "", nil)
		move(orchestrator.StateCancelled)
		emit(orchestrator.EventCancelled, orchestrator.StateDialing, orchestrator.StateCancelled)
		t.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonCancelled, CallerRestored: true, Verified: true,
			Detail: "cancelled by the client"}
	}
	t.State, t.UpdatedAt = state, clock
	if open {
		t.UpdatedAt = now
	}
	t.Version = int64(len(t.Steps)*2 - 1)
	t.Outbox = events
	return t
}

// newBenchTransfer is a transfer as the API creates it: pending, created
// now, on an agent's call of its own.
func newBenchTransfer(i int, now time.Time) *orchestrator.Transfer {
	t := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant, State: orchestrator.StatePending,
		Request: orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended, Completion: orchestrator.CompletionAuto,
			ConsultTimeout: 30 * time.Second, Call: orchestrator.CallRef{Domain: "default-0.example.com", User: fmt.Sprint(900_000 + i)},
			Target: "2010", ExternalID: fmt.Sprintf("crm-new-%d", i)},
		Owner: "transferd-0", CreatedAt: now, UpdatedAt: now,
		EventSeq: 1}
	t.Outbox = []orchestrator.Event{{ID: fmt.Sprintf("evt_%s_1", t.ID[len("tr_"):]), Tenant: t.Tenant, TransferID: t.ID, Seq: 1,
		Type: orchestrator.EventCreated, At: now, To: orchestrator.StatePending}}
	return t
}
