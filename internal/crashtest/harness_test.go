package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/pbxsim"
)

// Failure guards: how long anything may take before the test gives up. They
// bound waits; nothing waits for them to pass.
const (
	startTimeout = 30 * time.Second // a process prints "listening"
	dieTimeout   = 15 * time.Second // a process reaches its crash point and dies
	caseTimeout  = 90 * time.Second // one case, from the call placed to the checks
)

// crashMessage is the log line cmd/transferd writes right before it
// SIGKILLs itself at TRANSFERD_TEST_CRASH_AT.
const crashMessage = "TRANSFERD_TEST_CRASH_AT: killing the process"

// logLine is one JSON log line of a transferd process and when it arrived.
type logLine struct {
	at     time.Time
	fields map[string]any
	raw    string
}

func (l logLine) str(k string) string { s, _ := l.fields[k].(string); return s }

// bell wakes everyone waiting for "something happened": a log line of
// any process, or a process exit. Waiters take the channel, check their
// condition, then wait on the channel, so they never miss a change.
type bell struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *bell) ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

func (b *bell) next() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

// changes rings on every log line and every exit of every process.
var changes = &bell{ch: make(chan struct{})}

// logWatch collects a process's stderr, one JSON line at a time.
type logWatch struct {
	mu      sync.Mutex
	partial []byte
	lines   []logLine
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	now := time.Now()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		raw := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) != nil {
			m = map[string]any{}
		}
		w.lines = append(w.lines, logLine{at: now, fields: m, raw: raw})
	}
	w.mu.Unlock()
	changes.ring()
	return len(p), nil
}

// find returns the first line that matches.
func (w *logWatch) find(match func(logLine) bool) (logLine, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if match(l) {
			return l, true
		}
	}
	return logLine{}, false
}

// all returns every line so far.
func (w *logWatch) all() []logLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]logLine(nil), w.lines...)
}

// message matches a line by its "message" and, if id is set, its transfer.
func message(msg, id string) func(logLine) bool {
	return func(l logLine) bool {
		return l.str("message") == msg && (id == "" || l.str("transfer_id") == id)
	}
}

// messagePrefix matches a line whose "message" begins with prefix.
func messagePrefix(prefix string) func(logLine) bool {
	return func(l logLine) bool { return strings.HasPrefix(l.str("message"), prefix) }
}

// proc is one transferd process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	logs   *logWatch
	addr   string // http://127.0.0.1:port
	done   chan struct{}
	diedAt time.Time // set before done is closed
}

// dead reports whether the process has exited.
func (p *proc) dead() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killedBySIGKILL reports whether the process ended by SIGKILL.
func (p *proc) killedBySIGKILL() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// kill kills the process, unless it has exited, and waits for its exit.
func (p *proc) kill() {
	if !p.dead() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitDead waits for the process to exit, at most d.
func (p *proc) waitDead(d time.Duration) bool { return waitFor(d, p.dead) }

// tail is the process's last n log lines, for failure messages.
func (p *proc) tail(n int) string {
	lines := p.logs.all()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + p.name + ": " + l.raw + "\n")
	}
	return b.String()
}

// transferdEnv is the configuration of a transferd process talking to the
// shared simulator. Every TRANSFERD_* variable of the test's own
// environment is dropped, so that nothing from outside changes the store
// or the crash point.
func transferdEnv(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRANSFERD_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"TRANSFERD_LISTEN_ADDR=127.0.0.1:0",
		"TRANSFERD_LOG_LEVEL=debug", // provider requests too, for failure messages
		// The simulators are configured as real providers, so transferd
		// would require API keys; these tests exercise crashes, not auth,
		// on a loopback listener.
		"TRANSFERD_AUTH=none",
		"TRANSFERD_POLL_INTERVAL=10ms",
		// The crash tests' simulator lists a new call at once: a consult
		// whose dial was never sent (killed at dial:intent) may be given up
		// on quickly.
		"TRANSFERD_VISIBILITY_WINDOW=1s",
		// A step the killed process left unfinished counts as possibly
		// sent for this long after it began: the simulator answers in
		// milliseconds, so the default 15s would only make the restarted
		// process wait.
		"TRANSFERD_STEP_TIMEOUT=2s",
		// A join whose intent was saved and whose request may not have
		// gone out (killed at transfer:intent) is taken as not applied
		// once this passed; the default 15s would only make it wait.
		"TRANSFERD_VERIFY_TIMEOUT=3s",
		"TRANSFERD_POLL_MAX_INTERVAL=100ms",
		// A side with a simulator of its own overrides these two (see
		// side.env).
		"TRANSFERD_NETSAPIENS_BASE_URL="+bin.simBase+pbxsim.NetSapiensAPIPath,
		"TRANSFERD_NETSAPIENS_API_KEY="+pbxsim.DemoNetSapiensKey,
		"TRANSFERD_BANDWIDTH_BASE_URL="+bin.simBase+pbxsim.BandwidthAPIPath,
		"TRANSFERD_BANDWIDTH_USER_ID="+pbxsim.DemoBandwidthUser,
		"TRANSFERD_BANDWIDTH_API_TOKEN="+pbxsim.DemoBandwidthTok,
		"TRANSFERD_BANDWIDTH_API_SECRET="+pbxsim.DemoBandwidthSec,
	)
	return append(env, vars...)
}

// startTransferd starts a transferd process with env and returns once it
// listens. The process is killed when the test ends, whatever happened.
func startTransferd(t *testing.T, name string, env []string) *proc {
	t.Helper()
	p := startTransferdAsync(t, name, env)
	p.waitListening(t)
	return p
}

// startTransferdAsync starts the process without waiting for it to listen.
func startTransferdAsync(t *testing.T, name string, env []string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &logWatch{}, done: make(chan struct{})}
	p.cmd = newTransferdCmd(env, p.logs)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.diedAt = time.Now()
		close(p.done)
		changes.ring()
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("last log lines of %s:\n%s", p.name, p.tail(25))
		}
	})
	return p
}

// newTransferdCmd is a transferd process with env, its output into logs.
func newTransferdCmd(env []string, logs *logWatch) *exec.Cmd {
	cmd := exec.Command(bin.transferd)
	cmd.Env = env
	cmd.Stderr = logs
	cmd.Stdout = logs
	cmd.SysProcAttr = childAttr()
	return cmd
}

// waitListening waits for the "listening" line and takes the address.
func (p *proc) waitListening(t *testing.T) {
	t.Helper()
	ok := waitFor(startTimeout, func() bool {
		if l, ok := p.logs.find(message("listening", "")); ok {
			p.addr = "http://" + l.str("addr")
			return true
		}
		return p.dead()
	})
	switch {
	case p.addr != "":
	case !ok:
		t.Fatalf("%s did not listen within %s:\n%s", p.name, startTimeout, p.tail(20))
	default:
		t.Fatalf("%s exited before listening:\n%s", p.name, p.tail(20))
	}
}

// waitFor re-checks cond after every log line and process exit until it
// holds, at most d; it reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		next := changes.next()
		if cond() {
			return true
		}
		select {
		case <-next:
		case <-deadline.C:
			return cond()
		}
	}
}

// waitLine waits until one of procs logs a line that matches, at most d.
func waitLine(procs []*proc, match func(logLine) bool, d time.Duration) (*proc, logLine, bool) {
	var who *proc
	var line logLine
	ok := waitFor(d, func() bool {
		for _, p := range procs {
			if l, ok := p.logs.find(match); ok {
				who, line = p, l
				return true
			}
		}
		return false
	})
	return who, line, ok
}

// --- the transferd API -------------------------------------------------------------------------

// legRef and transfer are the parts of the API's transfer resource the
// tests read.
type legRef struct {
	CallID    string `json:"call_id"`
	SessionID string `json:"session_id"`
	Server    string `json:"server"`
	BridgeID  string `json:"bridge_id"`
}

type transfer struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	Completion     string `json:"completion"`
	TargetAnswered bool   `json:"target_answered"`
	Legs           struct {
		Caller  legRef `json:"caller"`
		Agent   legRef `json:"agent"`
		Consult legRef `json:"consult"`
	} `json:"legs"`
	Steps   []step `json:"steps"`
	Outcome *struct {
		Reason         string `json:"reason"`
		CallerRestored bool   `json:"caller_restored"`
		Verified       bool   `json:"verified"`
		Final          bool   `json:"final"`
		Detail         string `json:"detail"`
	} `json:"outcome"`
	CreatedAt time.Time `json:"created_at"`
}

// step is one of a transfer's steps.
type step struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

func (tr *transfer) terminal() bool {
	return tr.State == "completed" || tr.State == "failed" || tr.State == "cancelled"
}

func (tr *transfer) String() string {
	if tr == nil {
		return "<no transfer>"
	}
	s := tr.ID + " " + tr.State
	if o := tr.Outcome; o != nil {
		s += fmt.Sprintf(" (reason %s, caller_restored %v: %s)", o.Reason, o.CallerRestored, o.Detail)
	}
	return s
}

// httpc is the tests' HTTP client; requests are bounded by their contexts.
var httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// call sends a JSON request and decodes a JSON answer into out when the
// status is one of want. Any other status is an error carrying the body.
func call(ctx context.Context, method, url string, hdr map[string]string, in, out any, want ...int) (int, error) {
	status, _, data, err := callRaw(ctx, method, url, hdr, in)
	if err != nil {
		return status, err
	}
	for _, w := range want {
		if status == w {
			if out != nil && len(bytes.TrimSpace(data)) > 0 {
				if err := json.Unmarshal(data, out); err != nil {
					return status, fmt.Errorf("%s %s: decoding %q: %w", method, url, data, err)
				}
			}
			return status, nil
		}
	}
	return status, &statusError{method: method, url: url, status: status, body: string(data)}
}

// callRaw sends a request, with in as its JSON body unless nil, and
// returns the answer, whatever its status.
func callRaw(ctx context.Context, method, url string, hdr map[string]string, in any) (int, http.Header, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, resp.Header, data, err
}

type statusError struct {
	method, url string
	status      int
	body        string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.method, e.url, e.status, e.body)
}

// isStatus reports whether err is an answer with that status (as opposed
// to a connection that failed).
func isStatus(err error, status int) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == status
}

// createTransfer posts a transfer; it answers 202 at once.
func createTransfer(ctx context.Context, p *proc, body any) (*transfer, error) {
	var tr transfer
	if _, err := call(ctx, http.MethodPost, p.addr+"/v1/transfers", nil, body, &tr, http.StatusAccepted); err != nil {
		return nil, err
	}
	return &tr, nil
}

// getTransfer reads a transfer; with wait > 0 it long-polls its next
// change of state or of target_answered (Prefer: wait).
func getTransfer(ctx context.Context, p *proc, id string, wait int) (*transfer, error) {
	return getTransferAs(ctx, p, id, nil, wait)
}

// getTransferAs is getTransfer with hdr added to the request (a tenant's
// key).
func getTransferAs(ctx context.Context, p *proc, id string, hdr map[string]string, wait int) (*transfer, error) {
	h := maps.Clone(hdr)
	if wait > 0 {
		if h == nil {
			h = map[string]string{}
		}
		h["Prefer"] = fmt.Sprintf("wait=%d", wait)
	}
	var tr transfer
	if _, err := call(ctx, http.MethodGet, p.addr+"/v1/transfers/"+id, h, nil, &tr, http.StatusOK); err != nil {
		return nil, err
	}
	return &tr, nil
}

// signalTransfer posts /complete or /cancel.
func signalTransfer(ctx context.Context, p *proc, id, action string) error {
	_, err := call(ctx, http.MethodPost, p.addr+"/v1/transfers/"+id+"/"+action, nil, nil, nil, http.StatusAccepted)
	return err
}

// --- the simulator's control surface -----------------------------------------------------------

// simKey is the context key of the simulator a test talks to, when not
// the shared one (withSim).
type simKey struct{}

// withSim makes sim, and every helper that takes ctx, talk to the pbxsim
// at base.
func withSim(ctx context.Context, base string) context.Context {
	return context.WithValue(ctx, simKey{}, base)
}

// simBase is the base URL of the simulator ctx names: the shared one by
// default.
func simBase(ctx context.Context) string {
	if base, ok := ctx.Value(simKey{}).(string); ok {
		return base
	}
	return bin.simBase
}

// sim calls the control surface of ctx's pbxsim (simBase).
func sim(ctx context.Context, method, path string, in, out any) error {
	_, err := call(ctx, method, simBase(ctx)+path, nil, in, out, http.StatusOK, http.StatusCreated, http.StatusNoContent)
	return err
}

// simIdle waits until neither simulator has zero-delay work pending, so
// that what transferd was told (202) has happened before it is checked.
func simIdle(ctx context.Context) error {
	if err := sim(ctx, http.MethodGet, pbxsim.NetSapiensControlPath+"/idle", nil, nil); err != nil {
		return err
	}
	return sim(ctx, http.MethodGet, pbxsim.BandwidthControlPath+"/idle?timeout=10s", nil, nil)
}

// simReset forgets every call, behaviour and recorded request of both
// simulators.
func simReset(ctx context.Context) error {
	if err := sim(ctx, http.MethodPost, pbxsim.NetSapiensControlPath+"/reset", nil, nil); err != nil {
		return err
	}
	return sim(ctx, http.MethodPost, pbxsim.BandwidthControlPath+"/reset", nil, nil)
}
