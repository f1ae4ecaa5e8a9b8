// Package bwsim is a faithful, stateful simulator of Bandwidth's Catapult v1 voice API:
// calls, the "Transfer active Call" operation, bridges and call callbacks. It serves the
// Bandwidth adapter's tests over real HTTP, demo mode (the product against the simulator on
// loopback) and CRM developers running it standalone.
//
// The truth it follows is shared/reference/bandwidth-api-notes.md (§12 "What a faithful
// simulator of Catapult v1 calls must do") and the "Transfer active Call" page. Every
// behaviour the notes tag [GUESS] or [INF] is either a Config field or commented where it is
// implemented.
//
// Mount the API under any prefix with http.StripPrefix (e.g. "/v1"); the control surface
// (ControlHandler) and the Go methods place inbound calls, script how dialled numbers react
// (Behaviour), inject faults and inspect requests, calls, bridges and callbacks.
//
// Legs react asynchronously, as on the real platform: the API answers 201 before a dialled
// leg answers. Tests wait for that deterministically with WaitIdle (zero-delay work),
// WaitFor or WaitCallState (anything, including timers), never with sleeps.
//
// # Adversarial profile
//
// A real platform may be less cooperative. Config's adversarial fields, each a guess about
// real behaviour and off by default, make the simulator as hard as the platform may be:
// accepted updates applied late and out of order (ActionDelay, ActionJitter), created calls
// listed late (ListingDelay, ListingJitter) and then also unreadable (UnlistedNotFound),
// failing reads (ReadFailureRate), busy or rejecting legs that vanish before any read
// (VanishFailedLegs), lost responses to applied writes (LostResponseRate) and random faults
// of every kind (FaultRate). Every random choice comes from Config.Seed. Adversarial(seed)
// turns them all on; Sim.SetAdversity and the control surface switch them at run time:
//
//	PUT /config/adversarial {"enabled":true,"seed":7,"fault_rate":0.2}
//
// ("enabled" picks the profile or nothing as the base; the other fields, listed on
// ControlHandler, override it), GET reads it back and DELETE turns everything off.
//
// # Ground truth
//
// Invariant tests check the simulator, never the client under test: Sim.Truth (control
// GET /truth) is every call, including those not listed yet and vanished ones, with its real
// state, direction, numbers, tags, bridge, whether it is held and whom it hears; every bridge
// with its members and bridgeAudio; and per tag the calls that ever carried it and how many
// were answered. Sim.Actions (GET /actions) says when each accepted update was applied or
// why it was dropped. WaitSettled (GET /settled) waits until nothing is in flight; Settle
// (POST /settle) gets there at once, applying pending actions in their drawn order.
package bwsim
