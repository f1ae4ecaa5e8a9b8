// Package nssim simulates the live-calls endpoints of the NetSapiens NS API v2, statefully
// and over real HTTP, for three users: the netsapiens adapter's tests (through httptest),
// transferd's demo mode (on loopback), and CRM developers who need a sandbox PBX.
//
// The simulator follows the reference notes in shared/reference: hyphenated v2 field names,
// asynchronous 202 actions applied after Config.ActionDelay, click-to-call CallRequests whose
// callback leg rings before the destination, the attended-transfer merge of the vendor guide
// (and its call-term-user pitfall), bearer-key scopes, and {"code","message"} error bodies.
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
// and Wait re-checks a condition after each state change, for delayed actions.
package nssim
