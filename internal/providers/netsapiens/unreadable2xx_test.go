package netsapiens_test

import (
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A join the PBX accepted (202) with a body that cannot be read whole
// (longer than any answer is read: a proxy's page) is accepted: the
// status answers a command whose body nothing reads. Before, the body too
// long made it a refusal: the transfer failed as provider_rejected, and
// the recovery hung up the consult that the accepted join, applied a
// moment later, was to connect the caller to.
func TestAJoinAcceptedWithAnUnreadableBodyIsAccepted(t *testing.T) {
	h := setup(t, nssim.Config{ActionDelay: 300 * time.Millisecond})
	orig := h.placeCall(t)
	body := `{"code":202,"message":"` + strings.Repeat("x", apiclient.MaxBody) + `"}`
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpTransfer, Status: 202, Apply: true, Body: &body, Count: 1})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}
