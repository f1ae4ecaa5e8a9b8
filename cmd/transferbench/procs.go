package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// binaries are the commands under test, built once per run. floor, when
// built, is transferd with its store in memory (-tags storefloor).
type binaries struct{ transferd, pbxsim, floor string }

// buildOptions says how transferd is built.
type buildOptions struct {
	floor     bool   // also the storefloor build
	pgo       string // go build -pgo for transferd: auto, off, or a profile
	profiling bool   // the shipped stores' build can write profiles (-tags cpuprofile)
}

// build compiles transferd and pbxsim from the module that holds the
// working directory, as a deployment would run them (no race detector),
// transferd with the -pgo that o names, and with o.floor the benchmark
// build of transferd too.
func build(ctx context.Context, dir string, o buildOptions) (binaries, error) {
	b := binaries{transferd: filepath.Join(dir, "transferd"), pbxsim: filepath.Join(dir, "pbxsim")}
	pgo := "-pgo=" + cmp.Or(o.pgo, "auto")
	shipped := []string{pgo, "-o", b.transferd, "./cmd/transferd"}
	if o.profiling {
		shipped = append([]string{"-tags", "cpuprofile"}, shipped...)
	}
	builds := [][]string{shipped, {"-o", b.pbxsim, "./cmd/pbxsim"}}
	if o.floor {
		b.floor = filepath.Join(dir, "transferd-floor")
		builds = append(builds, []string{"-tags", "storefloor", pgo, "-o", b.floor, "./cmd/transferd"})
	}
	for _, args := range builds {
		cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("go build %s (run transferbench from the repository): %w", strings.Join(args, " "), err)
		}
	}
	return b, nil
}

// proc is a started process whose CPU and memory are read from /proc.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) cpu() time.Duration {
	d, err := procCPU(p.pid())
	if err != nil {
		return 0
	}
	return d
}

func (p *proc) mem(field string) int64 {
	n, _ := procMem(p.pid(), field)
	return n
}

// exited reports whether the process has ended; its exit stays in done
// for stop or a later wait.
func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the process to exit, killing it
// after grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// start runs bin and waits until ready finds a line of its output (stdout
// for pbxsim, the JSON log on stderr for transferd) naming its address.
// The rest of the output is drained to logw, so that the process never
// blocks on a full pipe.
func start(name, bin string, args, env []string, fromStderr bool, ready func(line string) (string, bool), logw io.Writer) (*proc, string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	if fromStderr {
		cmd.Stderr, cmd.Stdout = pw, logw
	} else {
		cmd.Stdout, cmd.Stderr = pw, logw
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { err := cmd.Wait(); _ = pw.Close(); p.done <- err }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if !found {
				if a, ok := ready(sc.Text()); ok {
					found = true
					addr <- a
					continue
				}
			}
			_, _ = logw.Write(append(sc.Bytes(), '\n'))
		}
		_, _ = io.Copy(logw, pr)
	}()
	select {
	case a := <-addr:
		return p, a, nil
	case err := <-p.done:
		return nil, "", fmt.Errorf("%s exited before it listened: %v", name, err)
	case <-time.After(60 * time.Second):
		p.stop(time.Second)
		return nil, "", fmt.Errorf("%s did not listen within 60s", name)
	}
}

// simOptions are the pbxsim flags a scenario needs.
type simOptions struct {
	targetMode  string
	ringTimeout time.Duration
}

func startSim(b binaries, o simOptions, logw io.Writer) (*proc, string, error) {
	args := []string{"-addr", "127.0.0.1:0", "-action-delay", "0", "-answer-delay", "1ms",
		"-target-mode", o.targetMode, "-history-limit", "1000"}
	if o.ringTimeout > 0 {
		args = append(args, "-ring-timeout", o.ringTimeout.String())
	}
	return start("pbxsim", b.pbxsim, args, nil, false, func(line string) (string, bool) {
		rest, ok := strings.CutPrefix(line, "pbxsim listening on ")
		return strings.TrimSpace(rest), ok
	}, logw)
}

// daemonOptions are what a scenario sets in transferd's environment.
type daemonOptions struct {
	sim, dataDir, databaseURL, apiKey string
	extra                             []string
	cgroup                            *memCgroup // run inside it, if set
}

// startDaemon starts transferd for a scenario of the run o. The run's
// -transferd-env settings reach every scenario's daemon through here.
func startDaemon(b binaries, run options, o daemonOptions, logw io.Writer) (*proc, string, error) {
	bin, args := b.transferd, []string(nil)
	if o.cgroup != nil {
		bin, args = o.cgroup.wrap(b.transferd)
	}
	p, addr, err := start("transferd", bin, args, daemonEnv(run, o), true, func(line string) (string, bool) {
		var l struct {
			Message string `json:"message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Message != "listening" {
			return "", false
		}
		return "http://" + l.Addr, true
	}, logw)
	return p, addr, err
}

// daemonEnv is transferd's environment for a scenario: the benchmark's
// settings, the scenario's (o.extra), then the run's -transferd-env, last
// so that they win (exec keeps the last value of a name).
func daemonEnv(run options, o daemonOptions) []string {
	env := []string{
		"TRANSFERD_LISTEN_ADDR=127.0.0.1:0",
		"TRANSFERD_NETSAPIENS_BASE_URL=" + o.sim + "/ns-api/v2",
		"TRANSFERD_NETSAPIENS_API_KEY=" + demoNetSapiensKey,
		"TRANSFERD_BANDWIDTH_BASE_URL=" + o.sim + "/v1",
		"TRANSFERD_BANDWIDTH_USER_ID=u-demo",
		"TRANSFERD_BANDWIDTH_API_TOKEN=t-demo",
		"TRANSFERD_BANDWIDTH_API_SECRET=s-demo",
		"TRANSFERD_DATA_DIR=" + o.dataDir,
		"TRANSFERD_INSTANCE_ID=bench",
		// The security limits are off, as issue #11 measures: every POST
		// of the throughput scenario is a long poll (Prefer: wait), more
		// than the default 100 per tenant at c=128.
		"TRANSFERD_TENANT_MAX_WAITS=0",
	}
	if o.databaseURL != "" {
		env = append(env, "TRANSFERD_DATABASE_URL="+o.databaseURL)
	}
	if o.apiKey != "" {
		env = append(env, "TRANSFERD_API_KEYS="+o.apiKey)
	} else {
		// Outside demo mode transferd refuses to start without API keys
		// unless told its API is open on purpose.
		env = append(env, "TRANSFERD_AUTH=none")
	}
	env = append(env, o.extra...)
	return append(env, run.transferdEnv...)
}

// demoNetSapiensKey is pbxsim's NetSapiens credential (pbxsim.DemoNetSapiensKey).
const demoNetSapiensKey = "nsd_demoDemoDemoDemoDemoDemoDemoDemoDemoDemoDemoDemo0000demo"

// simStats is pbxsim's GET /sim/stats.
type simStats struct {
	Connections        int64 `json:"connections"`
	NetSapiensRequests int64 `json:"netsapiens_requests"`
	BandwidthRequests  int64 `json:"bandwidth_requests"`
}

func (s simStats) requests() int64 { return s.NetSapiensRequests + s.BandwidthRequests }

// client is the benchmark's own HTTP client: pooled, so that its
// connections to transferd and to the control surface cost nothing
// per transfer on either side.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxIdleConns: 4096}, Timeout: 2 * time.Minute}

// call sends a JSON request and decodes a JSON answer into out (if not
// nil); any status but want is an error carrying the body.
func call(ctx context.Context, method, url string, in any, want int, out any, hdr ...string) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
		hdr = append([]string{"Content-Type", "application/json"}, hdr...) // the caller's headers set last, as before
	}
	b, err := send(ctx, method, url, body, want, hdr...)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// send makes a request with the header pairs hdr and returns its body (up
// to 4 MiB), or an error naming the status if it is not want.
func send(ctx context.Context, method, url string, body io.Reader, want int, hdr ...string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

func stats(ctx context.Context, sim string) (simStats, error) {
	var s simStats
	err := call(ctx, http.MethodGet, sim+"/sim/stats", nil, http.StatusOK, &s)
	if err != nil && strings.Contains(err.Error(), "404") {
		return s, errors.New("pbxsim has no /sim/stats: rebuild it from this repository")
	}
	return s, err
}
