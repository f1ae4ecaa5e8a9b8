package api

import "testing"

// BenchmarkDecodeCreate: a valid create's body read as the handler reads
// it, encoding/json's strict decode and checkNames' second look.
func BenchmarkDecodeCreate(b *testing.B) {
	data := []byte(`{"provider":"netsapiens","mode":"attended","call":{"domain":"acme.example","user":"1000"},` +
		`"target":"1010","completion":"auto","consult_timeout":"30s","external_id":"crm-42","metadata":{"ticket":"T-42"}}`)
	b.ReportAllocs()
	for b.Loop() {
		var body createRequest
		if bad, p := decodeFields(data, &body); bad != nil || p != nil {
			b.Fatal(bad, p)
		}
	}
}
