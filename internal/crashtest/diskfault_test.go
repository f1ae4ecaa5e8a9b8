package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// TestDiskThatRefusesWrites: transferd on SQLite, a manual transfer
// consulting, and then the disk refuses every write of the process
// (refuseWrites: what a full or failing disk does to it, with a real
// process and SQLite's own error paths). Meanwhile a create and a
// /complete are answered 503, the create leaves nothing behind, reads still answer, the transfer stays
// consulting with its caller held for the agent, and the replica says it
// is not ready. Once writes are allowed again, without a restart, the
// create made again with the same Idempotency-Key starts a transfer, the
// /complete made again completes the first, and the simulator shows both
// callers with the target and no call held or left over.
func TestDiskThatRefusesWrites(t *testing.T) {
	needBinaries(t)
	base, _, stop, err := startSimulator(bin.pbxsim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(withSim(context.Background(), base), caseTimeout)
	defer cancel()
	place := func(user string) nssim.ActiveCall {
		var s nssim.ActiveCall
		if err := sim(ctx, http.MethodPost, pbxsim.NetSapiensControlPath+"/calls",
			map[string]string{"domain": nsDomain, "user": user}, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	callerA, callerB := place("2001"), place("2002")
	request := func(user string) map[string]any {
		return map[string]any{"provider": "netsapiens", "completion": "manual", "consult_timeout": "60s",
			"call": map[string]string{"domain": nsDomain, "user": user}, "target": nsTarget}
	}
	p := startTransferd(t, "transferd", transferdEnv(
		"TRANSFERD_DATA_DIR="+t.TempDir(), "TRANSFERD_INSTANCE_ID=disk-1",
		"TRANSFERD_NETSAPIENS_BASE_URL="+base+pbxsim.NetSapiensAPIPath,
		// Renewed every half second: a renewal fails soon after the
		// writes are refused.
		"TRANSFERD_LEASE_TTL=2s"))

	a, err := createTransfer(ctx, p, request("2001"))
	if err != nil {
		t.Fatal(err)
	}
	if a, err = awaitTransfer(ctx, p, a.ID, func(tr *transfer) bool { return tr.State == "consulting" && tr.TargetAnswered }); err != nil {
		t.Fatal(err)
	}

	if err := refuseWrites(p.cmd.Process.Pid); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	allowed := false
	allow := func() {
		if !allowed {
			allowed = true
			if err := allowWrites(p.cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer allow()

	const key = "disk-refused-create"
	status, hdr, body := post(ctx, t, p.addr+"/v1/transfers", key, request("2002"))
	// 503 whichever write failed: the key's reservation (nothing done), a
	// save the store knows it did not make, or one whose outcome the
	// engine cannot tell (it looks for the transfer again).
	if status != http.StatusServiceUnavailable || !strings.HasPrefix(hdr.Get("Content-Type"), "application/problem+json") ||
		!strings.Contains(string(body), "problems.md#unavailable") {
		t.Fatalf("a create while the disk refuses writes: %d %s %s, want 503 unavailable, problem+json", status, hdr.Get("Content-Type"), body)
	}
	status, _, body = post(ctx, t, p.addr+"/v1/transfers/"+a.ID+"/complete", "", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "whether the action was recorded is not known") {
		t.Fatalf("a /complete while the disk refuses writes: %d %s, want 503 (the signal's save failed; it may have been recorded)", status, body)
	}
	// The replica says so once a write of its own failed.
	beatFailed := messagePrefix("renewing the heartbeat failed")
	if _, _, ok := waitLine([]*proc{p}, beatFailed, dieTimeout); !ok {
		t.Fatalf("no failed heartbeat renewal logged:\n%s", p.tail(20))
	}
	var ready map[string]any
	if status, err := call(ctx, http.MethodGet, p.addr+"/readyz", nil, nil, &ready, http.StatusServiceUnavailable); err != nil {
		t.Fatalf("/readyz while the disk refuses writes: %d %v, want 503", status, err)
	}
	// Reads still answer, and nothing moved: the failed create left no
	// transfer, and the first is consulting, its caller held.
	var list struct {
		Items []transfer `json:"items"`
	}
	if _, err := call(ctx, http.MethodGet, p.addr+"/v1/transfers", nil, nil, &list, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].ID != a.ID || list.Items[0].State != "consulting" {
		t.Fatalf("transfers while the disk refuses writes: %+v, want only %s consulting", list.Items, a.ID)
	}
	if got := liveSession(ctx, t, callerA.OrigCallID); got == nil || got.OrigInfo != nssim.InfoHeld && got.TermInfo != nssim.InfoHeld {
		t.Fatalf("the first caller's session while the disk refuses writes: %+v, want held", got)
	}

	allow()
	status, hdr, body = post(ctx, t, p.addr+"/v1/transfers", key, request("2002"))
	if status != http.StatusAccepted || hdr.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the create made again once the disk takes writes: %d (replayed %q) %s, want 202, not replayed", status, hdr.Get("Idempotent-Replayed"), body)
	}
	var b transfer
	if err := json.Unmarshal(body, &b); err != nil || b.ID == "" {
		t.Fatalf("the created transfer %s: %v", body, err)
	}
	if status, _, body := post(ctx, t, p.addr+"/v1/transfers/"+a.ID+"/complete", "", nil); status != http.StatusAccepted {
		t.Fatalf("the /complete made again once the disk takes writes: %d %s, want 202", status, body)
	}
	if _, err := awaitTransfer(ctx, p, b.ID, func(tr *transfer) bool { return tr.State == "consulting" && tr.TargetAnswered }); err != nil {
		t.Fatal(err)
	}
	if err := signalTransfer(ctx, p, b.ID, "complete"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		tr, err := awaitTransfer(ctx, p, id, (*transfer).terminal)
		if err != nil {
			t.Fatal(err)
		}
		if tr.State != "completed" || tr.Outcome == nil || !tr.Outcome.Verified {
			t.Errorf("%s, want completed and verified", tr)
		}
	}
	if _, err := call(ctx, http.MethodGet, p.addr+"/readyz", nil, nil, nil, http.StatusOK); err != nil {
		t.Errorf("/readyz once the disk takes writes and the transfers are over: %v", err)
	}

	// The ground truth: both callers talk to the target, nothing is held,
	// and no other call is up.
	if err := simIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var live []nssim.ActiveCall
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/calls", nil, &live); err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 {
		t.Errorf("%d live sessions, want the two callers' only: %+v", len(live), live)
	}
	for _, caller := range []nssim.ActiveCall{callerA, callerB} {
		s := liveSession(ctx, t, caller.OrigCallID)
		switch {
		case s == nil:
			t.Errorf("the caller's call %s is gone: %s", caller.OrigCallID, endedNetSapiens(ctx))
		case s.OrigInfo != nssim.InfoActive || s.TermInfo != nssim.InfoActive || s.TermUser != nsTarget:
			t.Errorf("the caller's session %s is with %q, infos %q/%q; want the target, both active", s.SessionID, s.TermUser, s.OrigInfo, s.TermInfo)
		}
	}
	if t.Failed() {
		t.Logf("transferd's last lines:\n%s", p.tail(30))
	}
}

// awaitTransfer long-polls transfer id until done holds for it.
func awaitTransfer(ctx context.Context, p *proc, id string, done func(*transfer) bool) (*transfer, error) {
	for {
		tr, err := getTransfer(ctx, p, id, 5)
		switch {
		case err != nil:
			return nil, err
		case done(tr):
			return tr, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: %w", tr, ctx.Err())
		}
	}
}

// post sends a JSON POST, with an Idempotency-Key when key is set, and
// returns the answer whatever its status.
func post(ctx context.Context, t *testing.T, url, key string, in any) (int, http.Header, []byte) {
	t.Helper()
	var hdr map[string]string
	if key != "" {
		hdr = map[string]string{"Idempotency-Key": key}
	}
	status, h, body, err := callRaw(ctx, http.MethodPost, url, hdr, in)
	if err != nil {
		t.Fatal(err)
	}
	return status, h, body
}

// liveSession is the simulator's live session of a caller's call, or nil.
func liveSession(ctx context.Context, t *testing.T, callID string) *nssim.ActiveCall {
	t.Helper()
	var live []nssim.ActiveCall
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/calls", nil, &live); err != nil {
		t.Fatal(err)
	}
	for i := range live {
		if live[i].OrigCallID == callID || live[i].TermCallID == callID {
			return &live[i]
		}
	}
	return nil
}
