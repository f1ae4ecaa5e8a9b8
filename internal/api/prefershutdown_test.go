package api_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// TestAWaitAShutdownEndedSaysWhatItWaited: a wait (Prefer: wait=N) that
// the server's shutdown ended before its time, with nothing it waited for
// come about, answered Preference-Applied: wait=N, which the contract
// reads as "the transfer did not settle (change, end) within N seconds":
// a client saw a 202 after a moment and took it that the transfer had
// stood still for a minute. What the server applied was the time it
// waited: it now says that, in whole seconds (RFC 7240 names the
// preference applied, and wait is an upper bound the server kept). A
// wait that ended as the transfer settled still says the wait granted.
// The shutdown's end of the waits (Config.Closing) is closed before the
// requests, so that each wait ends at once, whenever it began.
func TestAWaitAShutdownEndedSaysWhatItWaited(t *testing.T) {
	closing := make(chan struct{})
	e := newEnvConfig(t, zerolog.Nop(), testSigner(t), memory.New(), func(c *api.Config) { c.Closing = closing })
	e.fake.SetTarget(orchestratortest.TargetRings)
	ringing := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "manual")}, false)
	e.ids["ringing"] = ringing.transfer(t).ID
	e.wait(t, e.ids["ringing"], func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })
	// The cancel's hang-up is held: the transfer stays recovering, so
	// the cancel's wait has nothing to end it but the shutdown.
	gate := e.fake.Block(orchestratortest.MethodHangupConsult)
	t.Cleanup(gate.Release)
	close(closing)

	for _, c := range []struct {
		name   string
		x      exchange
		status int
	}{
		{"a create whose consult rings", exchange{method: "POST", path: "/v1/transfers",
			header: jsonHeader("Prefer", "wait=60"), body: createBody("1001", "auto")}, http.StatusAccepted},
		{"a long poll of a ringing consult", exchange{method: "GET", path: "/v1/transfers/<ringing>",
			header: map[string]string{"Prefer": "wait=60"}}, http.StatusOK},
		{"a cancel whose hang-up is held", exchange{method: "POST", path: "/v1/transfers/<ringing>/cancel",
			header: map[string]string{"Prefer": "wait=60"}}, http.StatusAccepted},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := time.Now()
			r := e.do(t, c.x, false)
			took := int(time.Since(sent) / time.Second)
			applied := r.header.Get("Preference-Applied")
			n, err := strconv.Atoi(strings.TrimPrefix(applied, "wait="))
			if r.status != c.status || !strings.HasPrefix(applied, "wait=") || err != nil || n > took {
				t.Errorf("%d, Preference-Applied %q after %s; want %d with the wait applied, at most wait=%d:\n%s",
					r.status, applied, time.Since(sent), c.status, took, r.body)
			}
		})
	}
	gate.Release()
	e.wait(t, e.ids["ringing"], terminal)

	// A wait the transfer's end ended says the wait granted, shutdown or
	// not: what it waited for came about within it.
	ended := e.do(t, exchange{method: "GET", path: "/v1/transfers/<ringing>", header: map[string]string{"Prefer": "wait=60"}}, false)
	if got := ended.header.Get("Preference-Applied"); got != fmt.Sprintf("wait=%d", 0) {
		t.Errorf("a long poll of an ended transfer: Preference-Applied %q; want wait=0 (nothing to wait for)", got)
	}
}
