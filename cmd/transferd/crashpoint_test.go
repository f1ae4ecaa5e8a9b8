package main

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The crash tests kill transferd at the Nth time a transfer reaches a
// point (a join sent in its second form reaches transfer:intent twice),
// counted per transfer, and only for the provider named.
func TestCrashMatcherCountsEachTransfersVisits(t *testing.T) {
	ns := func(id string) *orchestrator.Transfer {
		return &orchestrator.Transfer{ID: id, Request: orchestrator.Request{Provider: "netsapiens"}}
	}
	bw := &orchestrator.Transfer{ID: "b", Request: orchestrator.Request{Provider: "bandwidth"}}
	type visit struct {
		t     *orchestrator.Transfer
		point string
		want  bool
	}
	for _, tc := range []struct {
		spec   string
		visits []visit
	}{
		{"hold:effect", []visit{{ns("a"), "hold:intent", false}, {ns("a"), "hold:effect", true}}},
		{"transfer:intent#2@netsapiens", []visit{
			{bw, "transfer:intent", false}, {bw, "transfer:intent", false}, // another provider's
			{ns("a"), "transfer:intent", false},
			{ns("c"), "transfer:intent", false}, // another transfer's first
			{ns("a"), "transfer:effect", false},
			{ns("a"), "transfer:intent", true},
		}},
		{"dial:result#0", []visit{{ns("a"), "dial:result", true}}},
		{"dial:result#x", []visit{{ns("a"), "dial:result", true}}},
	} {
		due := crashMatcher(tc.spec)
		for i, v := range tc.visits {
			if got := due(v.t, v.point); got != v.want {
				t.Errorf("%s: visit %d (%s of %s %s) matched %v, want %v", tc.spec, i, v.point, v.t.Request.Provider, v.t.ID, got, v.want)
			}
		}
	}
}
