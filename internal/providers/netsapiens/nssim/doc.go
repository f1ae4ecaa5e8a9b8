// Package nssim simulates the live-calls endpoints of the NetSapiens NS API v2, statefully
// and over real HTTP, for three users: the netsapiens adapter's tests (through httptest),
// transferd's demo mode (on loopback), and CRM developers who need a sandbox PBX.
//
// The simulator follows the reference notes in shared/reference: hyphenated v2 field names,
// asynchronous 202 actions applied after Config.ActionDelay, click-to-call CallRequests whose
// callback leg rings before the destination, the attended-transfer merge of the vendor guide
// (and its call-term-user pitfall; which session survives it is Config.JoinKeeps), PSTN legs
// without a user as the spec's example shows them (Config.ExternalNumbers), bearer-key
// scopes, and {"code","message"} error bodies. Subscription writes (create, PUT, DELETE) are
// applied at once, or after Config.SubscriptionWriteDelay as a PBX answering 202 may apply
// them; ApplySubscriptionWrites lets a test apply the waiting ones when it wants.
// Listings of calls, and of subscriptions, are paged as Config.ListPageSize and
// Config.ListParams say: by default not at all (every row in one answer); with a page size,
// the limit and start query parameters honoured, start alone, limit alone, or neither [G] (guesses:
// /config/guesses switches them).
// Every behaviour the notes tag as a guess [G] is a Config field, so a test can pin the
// variant it depends on, and the comment where it is implemented says so.
//
// Two handlers make up a server: APIHandler, which a client configured with a base URL such
// as http://127.0.0.1:PORT/ns-api/v2 talks to, and ControlHandler, which plays the callers and
// phones (place inbound calls, make users answer, be busy or reject), injects faults and
// shows the recorded requests:
//
//	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{"nsd_key": {Domain: "TEST"}}})
//	defer sim.Close()
//	mux := http.NewServeMux()
//	mux.Handle("/ns-api/v2/", http.StripPrefix("/ns-api/v2", sim.APIHandler()))
//	mux.Handle("/sim/", http.StripPrefix("/sim", sim.ControlHandler()))
//
// Tests never sleep: WaitIdle returns once every action due without delay has been applied,
// WaitApplied once every accepted (202) action has been applied however late, and Wait
// re-checks a condition after each state change, for delayed actions.
//
// # Adversarial profile
//
// By default the simulator is cooperative: accepted actions are applied in order, a new call
// is listed the moment it exists, a duplicate call-id is refused, and nothing fails unless a
// Fault is injected. A real PBX may be less kind, so Config.Chaos (all off by default, every
// field a guess [G]) can make it: actions applied up to ActionJitter late and so sometimes out
// of order; CallRequests listed only after ListingDelay (+ListingJitter), unreachable by
// actions meanwhile (UnlistedCalls), and a consult whose target is busy or rejects never
// listed at all; duplicate call-ids accepted as second sessions; a fraction of GETs failing
// with 5xx or dropped while writes succeed; a fraction of writes performed and their response
// lost; and FaultRate, random faults of every kind (5xx, 429 with Retry-After, latency,
// drops, before or after the request is performed). LaggingNodeRate and LaggingNodeAge play
// an API node behind a load balancer that lags behind the others: a fraction of GETs do not
// know calls younger than the age (listed by another node a moment ago, they are left out of
// listings and read as 404); LaggingNodeWriteRate, a fraction of writes it serves, answering
// 404 to one addressed to such a call and doing nothing. Adversarial leaves it off. Random choices come
// from Config.Seed.
// Adversarial(seed) turns everything else on with about 20 % faults. At run time:
//
//	PUT    /sim/config/adversarial {"enabled":true,"seed":7,"fault_rate":0.2}
//	DELETE /sim/config/adversarial      (or {"enabled":false}: cooperative again)
//	GET    /sim/config/chaos            (every knob; PUT sets them all, absent ones off)
//
// # Ground truth
//
// Invariant tests check the PBX, never the client's word: Sim.Truth and GET /sim/truth return
// every live session, listed or not, with each leg's Call-ID, user and state (alerting, active,
// held); per CallRequest call-id, how many sessions it created, how many of their targets ever
// connected (two means a second consult leg was connected) and how many are live; the ended
// sessions with their reasons and whether they were ever listed; and the number of accepted
// actions not applied yet. Each recorded Request says which fault, if any, hit it.
package nssim
