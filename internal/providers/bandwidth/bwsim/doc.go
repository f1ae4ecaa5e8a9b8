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
package bwsim
