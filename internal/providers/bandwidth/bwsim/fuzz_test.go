package bwsim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzUpdateCall throws arbitrary bodies at the update/transfer endpoint: the decoder must
// never panic, never answer 5xx (no fault is injected) and answer success with an empty body.
func FuzzUpdateCall(f *testing.F) {
	for _, seed := range []string{
		`{"state":"transferring","transferTo":"+19192223333"}`,
		`{"state":"transferring","transferCallerId":"private","transferTo":"+18382947878","whisperAudio":{"sentence":"Hello! You have an incoming call"}}`,
		`{"state":"transferring","transferTo":"+19195554444","diversionTreatment":"stack","diversionReason":"do-not-disturb"}`,
		`{"state":"transferring","transferTo":null,"whisperAudio":{"gender":1}}`,
		`{"recordingEnabled":"TRUE","recordingFileFormat":"mp3"}`,
		`{"state":"completed"}`,
		`{"state":"active","tag":"x","callbackUrl":"https://x"}`,
		`"state"`,
		`{"transferTo":`,
		``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		sim := New(Config{OwnedNumbers: []string{ownedMain}})
		defer sim.Close()
		a, err := sim.PlaceCall(InboundCall{From: customer, To: ownedMain})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, callPath(a.ID), strings.NewReader(body))
		sim.APIHandler().ServeHTTP(rec, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		case rec.Code < 300 && rec.Body.Len() != 0:
			t.Fatalf("%q: success with body %s", body, rec.Body)
		case rec.Code == http.StatusCreated && rec.Header().Get("Location") == "":
			t.Fatalf("%q: 201 without Location", body)
		case rec.Code >= 400 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json"):
			t.Fatalf("%q: error without JSON body", body)
		}
	})
}

// FuzzCreateBridge does the same for the bridges endpoint.
func FuzzCreateBridge(f *testing.F) {
	for _, seed := range []string{`{"bridgeAudio":"true","callIds":["c-1"]}`, `{"callIds":[]}`, `{"callIds":"c-1"}`, `{"bridgeAudio":2}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		sim := New(Config{})
		defer sim.Close()
		rec := httptest.NewRecorder()
		sim.APIHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, bridgesPath, strings.NewReader(body)))
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
	})
}

// FuzzAdversarialConfig throws arbitrary bodies at PUT /config/adversarial: never a panic or
// a 5xx, and whatever is accepted leaves a valid profile in force.
func FuzzAdversarialConfig(f *testing.F) {
	for _, seed := range []string{
		`{"enabled":true,"seed":7,"fault_rate":0.2}`,
		`{"enabled":false,"read_failure_rate":0.3,"action_delay":"5ms"}`,
		`{"enabled":true,"listing_jitter":"1.5s","unlisted_not_found":false,"max_fault_latency":"0s"}`,
		`{"enabled":true,"fault_rate":1e309}`,
		`{"seed":-1}`,
		`{"action_delay":"-1s"}`,
		`{}`,
		``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		sim := New(Config{})
		defer sim.Close()
		rec := httptest.NewRecorder()
		sim.ControlHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/config/adversarial", strings.NewReader(body)))
		switch {
		case rec.Code >= 500:
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		case rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest:
			t.Fatalf("%q: %d", body, rec.Code)
		}
		if err := sim.Adversity().Validate(); err != nil {
			t.Fatalf("%q left an invalid profile: %v", body, err)
		}
	})
}
