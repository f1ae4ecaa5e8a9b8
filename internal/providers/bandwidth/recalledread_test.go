package bandwidth_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A reading made from a record whose notes say how its consult leg ended
// (busy), by a client that heard no callback and was never asked for the
// notes (a process that resumed the transfer: Notes runs at the engine's
// saves, and a reading may come first): the reading takes the record's
// notes back itself (observe's recall), and shows the consult ended busy,
// where the leg, gone from the platform, reads 404. Before any Notes the
// book was empty, and the leg read as one that never appeared (the
// sixty-sixth pass's mutations found the recall in observe untested: the
// engine's adoption saves, and so recalls, before its first reading).
func TestAReadingTakesTheRecordsNotesBackItself(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	const leg = "c-gonebusy"
	tr := &orchestrator.Transfer{ID: "tr_01JRECALLEDREADXXXXXXXXXX0", Request: attendedReq(a, g, orchestrator.CompletionAuto),
		ProviderNotes: "leg=" + leg + " " + leg + "=USER_BUSY"}
	tr.Legs.Caller = orchestrator.LegRef{CallID: a.ID, BridgeID: b1.ID}
	tr.Legs.Agent = orchestrator.LegRef{CallID: g.ID}
	tr.Legs.Consult = orchestrator.LegRef{CallID: leg}
	tr.Sent.Dial = time.Now().Add(-time.Minute)
	v, err := h.client.Read(t.Context(), h.client.WatchKey(tr), []*orchestrator.Transfer{tr})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := v.Observe(tr)
	if err != nil || obs.Consult != orchestrator.ConsultEnded || obs.EndReason != orchestrator.ReasonBusy {
		t.Errorf("observation %+v, %v; want the consult ended busy, as the record's notes say", obs, err)
	}
}
