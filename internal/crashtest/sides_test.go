package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// side is one way the simulators answer where the reference notes could
// only guess, and whether transferd hears the providers' callbacks: the
// crash points are run on each, since transferd has to be right whichever
// way a real PBX goes (the storm draws these per seed; here every point
// meets every side). The zero guesses are the simulators' defaults.
type side struct {
	name string
	ns   nssim.Guesses
	bw   bwsim.Guesses
	// callbacks runs transferd with TRANSFERD_PUBLIC_URL on a loopback
	// address that the restarted process binds again: Bandwidth posts call
	// events and nssim's event subscriptions post what changed, and both
	// are lost while transferd is down. The replicas on PostgreSQL each
	// have an address of their own, and the dead one's is never bound
	// again.
	callbacks bool
	// base is the side's own pbxsim (start): the sides run in parallel.
	base string
}

// sides are the sides every crash point runs on. The second and third
// take, between them, every value of each guess the crash flows can meet
// but the defaults' (a guess with three values gets one each):
//
//   - a hold that marks both legs held, a join that keeps the consult's
//     session, the term leg's state under one name or the other, numbers
//     as JSON numbers, an unknown destination answered 404, and a join
//     whose hostname must name the consult's core while transferd names
//     the caller's first: refused when wrong (sent again at once naming
//     the consult's), or ignored (sent again in its second form once a
//     reading shows it did not take); a DELETE of a ringing call that
//     leaves it ringing, or is refused (the consult is rejected);
//   - a connected caller's call that reads active, and shows transferTo
//     always (polled: no reading could tell a connected caller from one
//     given back otherwise, which the storm covers) or never (with
//     callbacks, which name the B-leg), a failed transfer leg that gives
//     the caller back, no hang-up event or another cause after a timeout,
//     a B-leg's events sent nowhere;
//   - nssim's subscription posts in the hyphenated names, each twice and
//     in reverse order;
//   - (polled) a read by id under the agent's user of the caller's leg,
//     which is not the agent's, answered 404 whatever the caller does.
var sides = []side{
	{name: "defaults"},
	{
		name: "other-sides-polled",
		ns: nssim.Guesses{TermInfoField: nssim.TermInfoCall, NumericUsers: true, WrongHostname: nssim.HostnameReject,
			HostnameMatch: nssim.HostnameOfDestination, UnknownDestination: nssim.DestinationNotFound,
			HeldSide: nssim.HeldBoth, JoinKeeps: nssim.JoinKeepsConsult, RingingDisconnect: nssim.RingingIgnored,
			ReadOtherLeg: nssim.OtherLegNotFound},
		bw: bwsim.Guesses{TransferFailure: bwsim.TransferFailureRestore, TransferredALegState: bwsim.StateActive,
			ALegTransferFields: bwsim.ALegTransferFieldsAlways, TimeoutHangupCause: bwsim.TimeoutHangupNone,
			TransferLegFrom: bwsim.TransferLegFromCalledNumber},
	},
	{
		name: "other-sides-callbacks",
		ns: nssim.Guesses{TermInfoField: nssim.TermInfoSpec, HostnameMatch: nssim.HostnameOfDestination,
			HeldSide: nssim.HeldBoth, JoinKeeps: nssim.JoinKeepsConsult, RingingDisconnect: nssim.RingingRefused,
			SubscriptionNames: nssim.NamesHyphenated, SubscriptionDuplicate: true, SubscriptionReorder: true},
		bw: bwsim.Guesses{TransferFailure: bwsim.TransferFailureRestore, TransferredALegState: bwsim.StateActive,
			ALegTransferFields: bwsim.ALegTransferFieldsNever, TimeoutHangupCause: bwsim.CauseOriginatorCancel,
			TransferLegCallback: bwsim.TransferLegCallbackNone, TransferLegFrom: bwsim.TransferLegFromAnonymous},
		callbacks: true,
	},
}

// joinsTwice reports whether a NetSapiens join takes its second form on
// this side at every transfer: the PBX wants the consult's core server
// named and ignores a join naming the caller's, which transferd (its
// TRANSFERD_NETSAPIENS_JOIN_HOSTNAME at the default) names first. The join
// is then sent again once a reading shows it did not take, and the crash
// points of that second send are run too.
func (s side) joinsTwice() bool {
	return s.ns.HostnameMatch == nssim.HostnameOfDestination &&
		(s.ns.WrongHostname == "" || s.ns.WrongHostname == nssim.HostnameIgnore)
}

func (s side) String() string {
	ns, _ := json.Marshal(s.ns)
	bw, _ := json.Marshal(s.bw)
	return fmt.Sprintf("%s: netsapiens %s; bandwidth %s; provider callbacks %v", s.name, ns, bw, s.callbacks)
}

// start starts the side's own pbxsim, stopped when the test ends, and
// sets its guesses to the side's; it returns the side with its base.
func (s side) start(t *testing.T) side {
	t.Helper()
	base, _, stop, err := startSimulator(bin.pbxsim)
	if err != nil {
		t.Fatalf("starting the side's pbxsim: %v", err)
	}
	t.Cleanup(stop)
	s.base = base
	ctx, cancel := context.WithTimeout(s.ctx(context.Background()), 30*time.Second)
	defer cancel()
	if err := sim(ctx, http.MethodPut, pbxsim.NetSapiensControlPath+"/config/guesses", s.ns, nil); err != nil {
		t.Fatalf("setting nssim's guesses: %v", err)
	}
	if err := sim(ctx, http.MethodPut, pbxsim.BandwidthControlPath+"/config/guesses", s.bw, nil); err != nil {
		t.Fatalf("setting bwsim's guesses: %v", err)
	}
	t.Logf("side %s", s)
	return s
}

// ctx is parent talking to the side's pbxsim (withSim).
func (s side) ctx(parent context.Context) context.Context { return withSim(parent, s.base) }

// env is what a transferd process adds to its environment on this side:
// the side's pbxsim as both providers, and, with callbacks, a loopback
// address picked at each call. A case's processes that stand for one
// restarted process share one env, so that the URLs in the providers'
// hands stay good across the restart; replicas call it each.
func (s side) env(t *testing.T) []string {
	t.Helper()
	env := []string{"TRANSFERD_NETSAPIENS_BASE_URL=" + s.base + pbxsim.NetSapiensAPIPath,
		"TRANSFERD_BANDWIDTH_BASE_URL=" + s.base + pbxsim.BandwidthAPIPath}
	if !s.callbacks {
		return env
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return append(env, "TRANSFERD_LISTEN_ADDR="+addr, "TRANSFERD_PUBLIC_URL=http://"+addr,
		"TRANSFERD_CALLBACK_SECRET="+crashCallbackSecret)
}

// The callback secrets of a case's two processes: the restarted process of
// a side with callbacks signs with another secret and accepts the first
// process's (TRANSFERD_CALLBACK_SECRET_ACCEPTED), as a restart in the
// middle of a rotation of the secret does. The URLs the first process gave
// the providers carry its tokens: its Bandwidth legs' callbackUrls, by
// which the restarted process knows a leg whose answer was lost, and its
// NetSapiens subscriptions' post-urls.
const (
	crashCallbackSecret   = "crash-callback-secret-0123456789abcdef"
	rotatedCallbackSecret = "crash-callback-secret-rotated-0123456789"
)

// accepting is env, a first process's, at the first step of a rotation of
// the callback secret: it still signs with its secret and accepts the
// rotated one. Without a secret it is env.
func accepting(env []string) []string {
	if !slices.Contains(env, "TRANSFERD_CALLBACK_SECRET="+crashCallbackSecret) {
		return env
	}
	return append(slices.Clone(env), "TRANSFERD_CALLBACK_SECRET_ACCEPTED="+rotatedCallbackSecret)
}

// rotated is env, a first process's, with the callback secret rotated: the
// new one signs and the first one is accepted. Without a secret it is env.
func rotated(env []string) []string {
	out := slices.Clone(env)
	for i, kv := range out {
		if kv == "TRANSFERD_CALLBACK_SECRET="+crashCallbackSecret {
			out[i] = "TRANSFERD_CALLBACK_SECRET=" + rotatedCallbackSecret
			return append(out, "TRANSFERD_CALLBACK_SECRET_ACCEPTED="+crashCallbackSecret)
		}
	}
	return out
}

// eachSide runs body on every side at once, each in a subtest named for
// the side. The sides are started together rather than with t.Parallel:
// go test runs at most -parallel (GOMAXPROCS by default) parallel subtests
// at a time, and on two cores the third side waited for the first two to
// end, though the sides spend their time waiting on processes, not on the
// CPU; that wait made the crash tests run past go test's default timeout.
func eachSide(t *testing.T, body func(t *testing.T, sd side)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, sd := range sides {
		wg.Go(func() {
			t.Run(sd.name, func(t *testing.T) { body(t, sd) })
		})
	}
	wg.Wait()
}
