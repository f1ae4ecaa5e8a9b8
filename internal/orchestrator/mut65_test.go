package orchestrator_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Only the target's hang-up is put in doubt for a transfer resumed from a
// process that may have hung the consult up unrecorded: a reason the
// provider gave that no hang-up of ours produces (busy, rejected, no
// answer) is kept, and nothing changes for a transfer this process
// created, one whose hand-over said nothing was sent unrecorded, or whose
// consult a reading showed outlive such a hang-up.
func TestOnlyATargetsHangupIsPutInDoubtForAResumedTransfer(t *testing.T) {
	adopted := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		resumed   bool
		adoptedAt time.Time
		outlived  bool
		reason    orchestrator.Reason
		want      orchestrator.Reason
	}{
		{"resumed, target hung up", true, adopted, false, orchestrator.ReasonTargetHungUp, orchestrator.ReasonConsultFailed},
		{"resumed, busy", true, adopted, false, orchestrator.ReasonBusy, orchestrator.ReasonBusy},
		{"resumed, rejected", true, adopted, false, orchestrator.ReasonRejected, orchestrator.ReasonRejected},
		{"resumed, no answer", true, adopted, false, orchestrator.ReasonNoAnswer, orchestrator.ReasonNoAnswer},
		{"created here", false, time.Time{}, false, orchestrator.ReasonTargetHungUp, orchestrator.ReasonTargetHungUp},
		{"handed over on record", true, time.Time{}, false, orchestrator.ReasonTargetHungUp, orchestrator.ReasonTargetHungUp},
		{"outlived the window", true, adopted, true, orchestrator.ReasonTargetHungUp, orchestrator.ReasonTargetHungUp},
	} {
		if got := orchestrator.WhoEnded(tc.resumed, tc.adoptedAt, tc.outlived, tc.reason); got != tc.want {
			t.Errorf("%s: %s became %s, want %s", tc.name, tc.reason, got, tc.want)
		}
	}
}
