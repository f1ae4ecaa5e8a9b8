package nssim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// FuzzAPI feeds arbitrary requests to the API handler: it must never panic, and every answer
// must be JSON, errors in the {"code","message"} shape.
func FuzzAPI(f *testing.F) {
	f.Add(uint8(0), "/domains/TEST/calls", []byte(nil))
	f.Add(uint8(1), "/domains/TEST/users/1000/calls", []byte(`{"call-id":"x","call-term-user":"1010","synchronous":"yes"}`))
	f.Add(uint8(1), "/domains/~/users/~/calls", []byte(`{"call-id":1,"call-term-user":true}`))
	f.Add(uint8(2), "/domains/TEST/users/1000/calls/x/transfer", []byte(`{"hostname":"h","call-destination-session-id":"1"}`))
	f.Add(uint8(2), "/domains/TEST/users/1000/calls/%zz/hold", []byte(`{`))
	f.Add(uint8(3), "/domains/TEST/users/1000/calls/x/reject", []byte(nil))
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut}
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		sim := nssim.New(nssim.Config{})
		defer sim.Close()
		if _, err := sim.PlaceCall(nssim.InboundCall{User: "1000"}); err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://sim"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer k")
		rec := httptest.NewRecorder()
		sim.APIHandler().ServeHTTP(rec, req)
		var out any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: status %d, body %q is not JSON", req.Method, path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != rec.Code || e.Message == "" {
				t.Fatalf("%s %q: error body %q", req.Method, path, rec.Body)
			}
		}
	})
}

// FuzzActiveCall decodes arbitrary records: whatever decodes must re-encode and decode to
// the same record.
func FuzzActiveCall(f *testing.F) {
	f.Add([]byte(`{"call-session-id":"1010101010101010101","call-term-user":1000,"call-term-info":"active"}`))
	f.Add([]byte(`{"term-orig-info":"held","call-orig-user":"","auto":true}`))
	f.Add([]byte(`{"call-term-user":{"x":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c nssim.ActiveCall
		if json.Unmarshal(data, &c) != nil {
			return
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var again nssim.ActiveCall
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding changed\n%s\n%s", b, b2)
		}
	})
}
