package api_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Every HEAD answers as openapi.yaml says its operation does, with no
// body, with its tenant's one wait slot held by a stream: a HEAD of a
// transfer with Prefer: wait (no Preference-Applied, no 429), of another
// tenant's transfer or none (404), of a transfer's events and of the
// lists, and of the stream, which opens none but answers as its GET
// would (a 429 the contract declares). Checked by review of the pass
// that made a HEAD of a transfer stop long-polling.
func TestEveryHeadConformsWithTheWaitSlotsTaken(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	e := newLimitedEnv(t, fake, api.Config{Limits: api.Limits{MaxWaits: 1}})
	ringing(t, e, "6200")
	closeStream := openStream(t, e, readKey)
	defer closeStream()

	wait := map[string]string{"Prefer": "wait=60"}
	for _, tc := range []struct {
		path   string
		header map[string]string
		status int
	}{
		{"/v1/transfers/<ringing>", wait, http.StatusOK},
		{"/v1/transfers/<ringing>", map[string]string{"Prefer": "wait=60", "Authorization": "Bearer " + otherReadKey}, http.StatusNotFound},
		{"/v1/transfers/tr_01JAAAAAAAAAAAAAAAAAAAAAAA", wait, http.StatusNotFound},
		{"/v1/transfers/<ringing>/events", wait, http.StatusOK},
		{"/v1/transfers", wait, http.StatusOK},
		{"/v1/events", nil, http.StatusTooManyRequests},
		{"/healthz", nil, http.StatusOK},
	} {
		h := e.do(t, exchange{method: http.MethodHead, path: tc.path, header: tc.header}, false)
		if h.status != tc.status || len(h.body) != 0 || h.header.Get("Preference-Applied") != "" {
			t.Errorf("HEAD %s: %d, %d bytes, Preference-Applied %q; want %d, no body, no wait applied",
				tc.path, h.status, len(h.body), h.header.Get("Preference-Applied"), tc.status)
		}
	}
}
