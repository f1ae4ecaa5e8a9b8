package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A manual transfer whose target answered waits for the client: a long
// poll on it must answer at once, not wait for a change that only the
// client itself can cause. It says so with Preference-Applied: wait=0, as
// every answer to a Prefer: wait carries the wait applied: it answered
// without the header, which openapi.yaml promises whenever the request
// had Prefer: wait (found by review).
func TestLongPollDoesNotWaitOnATransferAwaitingTheClient(t *testing.T) {
	inst := newInstance(t, memory.New(), orchestratortest.NewFake("netsapiens"))
	created := post(t, inst.srv.URL+"/v1/transfers", "", manualBody)
	var tr struct{ ID string }
	if err := json.Unmarshal([]byte(created.body), &tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := inst.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered }); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, inst.srv.URL+created.location, nil)
	req.Header.Set("Prefer", "wait=60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		State          string `json:"state"`
		TargetAnswered bool   `json:"target_answered"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.State != "consulting" || !got.TargetAnswered || resp.Header.Get("Preference-Applied") != "wait=0" {
		t.Fatalf("state %s answered %v, Preference-Applied %q; want an answer at once, with wait=0", got.State, got.TargetAnswered, resp.Header.Get("Preference-Applied"))
	}
}

// Prefer: wait=N is capped at 60 s however large N is: N is capped before
// it becomes a duration, which overflows past 2^63 ns (about 292 years),
// and a number past any integer is still a wait. The answer says
// wait=60, and the write deadline a long poll moves by its wait is 60 s
// ahead, not in the past (the client would get no answer at all for a
// transfer that was created).
func TestPreferWaitPastTheCapIsTheCap(t *testing.T) {
	e := newLimitedEnv(t, orchestratortest.NewFake("netsapiens"), api.Config{WriteTimeout: 30 * time.Second})
	for i, n := range []string{"10000000000", "99999999999999999999"} {
		t.Run(n, func(t *testing.T) {
			prefer := "wait=" + n
			create := exchange{method: "POST", path: "/v1/transfers",
				header: jsonHeader("Prefer", prefer, "Idempotency-Key", "huge-wait-"+n), body: createBody(strconv.Itoa(7100+i), "manual")}
			created := e.do(t, create, false)
			if created.status != http.StatusCreated || created.header.Get("Preference-Applied") != "wait=60" {
				t.Fatalf("create with Prefer: %s: %d, Preference-Applied %q; want 201 with wait=60", prefer, created.status, created.header.Get("Preference-Applied"))
			}
			cancel := exchange{method: "POST", path: "/v1/transfers/" + created.transfer(t).ID + "/cancel", header: map[string]string{"Prefer": prefer}}
			if r := e.do(t, cancel, false); r.status != http.StatusOK || r.header.Get("Preference-Applied") != "wait=60" {
				t.Errorf("cancel with Prefer: %s: %d, Preference-Applied %q; want 200 with wait=60", prefer, r.status, r.header.Get("Preference-Applied"))
			}
		})
	}
}

// A create's Prefer: wait with an RFC 7240 parameter is a wait: it was
// read as the value "60; foo=bar" and ignored, so the create answered 202
// at once without Preference-Applied (found by review).
func TestCreateHonoursAWaitWithParameters(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTarget(orchestratortest.TargetRings)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "respond-async, wait=60; foo=bar"),
		body: createBody("1000", "manual")}, false)
	if r.status != http.StatusCreated || r.header.Get("Preference-Applied") != "wait=60" {
		t.Fatalf("create with Prefer: respond-async, wait=60; foo=bar: %d, Preference-Applied %q; want 201 (consulting) with wait=60:\n%s",
			r.status, r.header.Get("Preference-Applied"), r.body)
	}
}
