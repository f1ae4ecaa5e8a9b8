package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The naive client is the NetSapiens guide's five requests in a straight
// line: list the domain's calls, hold the agent, create the consult call,
// list until the consult is answered, transfer. No store, no recovery,
// no verification. It runs in a process of its own (this binary with
// -naive-worker), so that its CPU time is read from /proc like
// transferd's; the parent places the calls and hands it one domain per
// line on stdin, and it answers "ok <domain>" or "err <domain> <why>".
//
// With a gap (-naive-gaps), the client pauses that long before each of its
// requests. Its process then goes idle between requests, as transferd's
// does while a lone transfer waits for the provider or for the disk, and
// pays for waking up each time: what the gap adds to its CPU per transfer
// is that cost on the host at hand, apart from any work.

// nsCall is what the naive client reads of a listed call.
type nsCall struct {
	SessionID  string `json:"call-session-id"`
	OrigCallID string `json:"call-orig-call-id"`
	TermCallID string `json:"call-term-call-id"`
	TermUser   string `json:"call-term-user"`
	TermInfo   string `json:"call-term-info"`
	ByCallID   string `json:"call-by-call-id"`
	CoreServer string `json:"core-server"`
}

func naiveServe(ctx context.Context, sim string, workers int, gap time.Duration, in io.Reader, out io.Writer) error {
	if sim == "" {
		return errors.New("-naive-worker needs -sim")
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second}
	base := sim + "/ns-api/v2"
	do := func(method, path string, body any, out any) error {
		if gap > 0 {
			time.Sleep(gap)
		}
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, r)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+demoNetSapiensKey)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
		}
		if out != nil {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	var n atomic.Int64
	transfer := func(domain string) error {
		// 1. Read active calls; find the agent's.
		var calls []nsCall
		if err := do(http.MethodGet, "/domains/"+domain+"/calls", nil, &calls); err != nil {
			return err
		}
		var orig *nsCall
		for i := range calls {
			if calls[i].TermUser == "1000" {
				orig = &calls[i]
			}
		}
		if orig == nil {
			return errors.New("no call of user 1000")
		}
		user := "/domains/" + domain + "/users/1000/calls"
		// 2. Hold.
		if err := do(http.MethodPatch, user+"/"+orig.TermCallID+"/hold", nil, nil); err != nil {
			return err
		}
		// 3. Create the consult call.
		id := fmt.Sprintf("naive-%d-%d", os.Getpid(), n.Add(1))
		if err := do(http.MethodPost, user, map[string]string{"synchronous": "no", "call-id": id,
			"call-term-user": "1010", "auto-answer-enabled": "yes"}, nil); err != nil {
			return err
		}
		// 4. List until the consult shows answered.
		var consult *nsCall
		for try := 0; consult == nil; try++ {
			if try == 1000 {
				return errors.New("the consult never showed answered")
			}
			if try > 0 {
				time.Sleep(time.Millisecond)
			}
			calls = calls[:0]
			if err := do(http.MethodGet, "/domains/"+domain+"/calls", nil, &calls); err != nil {
				return err
			}
			for i := range calls {
				if (calls[i].OrigCallID == id || calls[i].ByCallID == id) && calls[i].TermInfo == "active" {
					consult = &calls[i]
				}
			}
		}
		// 5. Transfer.
		return do(http.MethodPatch, user+"/"+orig.OrigCallID+"/transfer",
			map[string]string{"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID}, nil)
	}

	domains := make(chan string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range domains {
				err := transfer(d)
				mu.Lock()
				if err != nil {
					fmt.Fprintf(out, "err %s %s\n", d, strings.ReplaceAll(err.Error(), "\n", " "))
				} else {
					fmt.Fprintf(out, "ok %s\n", d)
				}
				mu.Unlock()
			}
		}()
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		domains <- sc.Text()
	}
	close(domains)
	wg.Wait()
	return sc.Err()
}

// naiveProc is a running naive worker and the replies it owes.
type naiveProc struct {
	p       *proc
	stdin   io.WriteCloser
	mu      sync.Mutex
	pending map[string]chan error
}

func startNaive(sim string, c int, gap time.Duration, logw io.Writer) (*naiveProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-naive-worker", "-sim", sim, "-workers", fmt.Sprint(c), "-gap", gap.String())
	cmd.Stderr = logw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &naiveProc{p: &proc{name: "naive", cmd: cmd, done: make(chan error, 1)}, stdin: stdin, pending: map[string]chan error{}}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			verdict, rest, _ := strings.Cut(sc.Text(), " ")
			domain, why, _ := strings.Cut(rest, " ")
			n.mu.Lock()
			ch := n.pending[domain]
			delete(n.pending, domain)
			n.mu.Unlock()
			if ch == nil {
				continue
			}
			if verdict == "ok" {
				ch <- nil
			} else {
				ch <- errors.New(why)
			}
		}
		n.p.done <- cmd.Wait()
	}()
	return n, nil
}

func (n *naiveProc) transfer(ctx context.Context, domain string) error {
	ch := make(chan error, 1)
	n.mu.Lock()
	n.pending[domain] = ch
	_, err := io.WriteString(n.stdin, domain+"\n")
	n.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *naiveProc) stop() {
	_ = n.stdin.Close()
	select {
	case <-n.p.done:
	case <-time.After(10 * time.Second):
		_ = n.p.cmd.Process.Kill()
		<-n.p.done
	}
}

// naivePace names the naive client's pace in its rows.
func naivePace(gap time.Duration) string {
	if gap == 0 {
		return "back to back"
	}
	return gap.String() + " gaps"
}

// naiveResults drives the naive client at every concurrency, a fresh
// worker process per point; then again with each of o.naiveGaps between
// its requests.
func naiveResults(ctx context.Context, o options, sim string, simProc *proc, seq *atomic.Int64, logw io.Writer) ([]*result, error) {
	var out []*result
	for _, gap := range append([]time.Duration{0}, o.naiveGaps...) {
		for _, c := range o.concurrency {
			r, err := naivePoint(ctx, o, sim, simProc, seq, c, gap, logw)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// naivePoint measures the naive client at concurrency c.
func naivePoint(ctx context.Context, o options, sim string, simProc *proc, seq *atomic.Int64, c int, gap time.Duration, logw io.Writer) (*result, error) {
	n, err := startNaive(sim, c, gap, logw)
	if err != nil {
		return nil, err
	}
	one := func(ctx context.Context, s int64) (time.Duration, error) {
		domain := fmt.Sprintf("N%d", s)
		if err := call(ctx, http.MethodPost, sim+"/sim/netsapiens/calls",
			map[string]string{"domain": domain, "user": "1000", "from": "15555555555", "to": "11111111111"}, http.StatusCreated, nil); err != nil {
			return 0, err
		}
		start := time.Now()
		err := n.transfer(ctx, domain)
		return time.Since(start), err
	}
	_, _, _, _ = drive(ctx, c, 200*time.Millisecond, seq, one) // warm up
	r := &result{store: "-", client: "naive netsapiens", c: c, naive: naivePace(gap)}
	if gap > 0 {
		r.client += ", " + r.naive
	}
	err = measure(ctx, r, o.duration, n.p, simProc, sim, false, seq, one, nil)
	n.stop()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "  %s c=%d: %d transfers\n", r.client, c, r.n)
	return r, nil
}
