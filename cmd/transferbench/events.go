package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
)

// The events scenario measures the two watcher targets with
// transferd's default poll settings:
//
//   - answer to join: NetSapiens auto transfers whose targets answer after
//     a random delay; the simulator's ground truth gives, per consult
//     call-id, when its target answered and when the attended transfer
//     (the join) arrived. Target: p99 ≤ 300 ms.
//   - provider requests per NetSapiens transfer, amortised, with many
//     transfers consulting at once in one domain (one watcher reads it for
//     all of them). Target: ≤ 5.
type eventsOptions struct {
	transfers   int           // answer-to-join sample size
	concurrency int           // its transfers in flight at once
	minAnswer   time.Duration // the random answer delay's bounds
	maxAnswer   time.Duration
	oneDomain   int // transfers consulting at once in one domain
}

// callIDTruth is what the benchmark reads of nssim's GET /truth.
type callIDTruth struct {
	CallID           string     `json:"call_id"`
	TargetAnsweredAt *time.Time `json:"target_answered_at"`
	JoinRequestedAt  *time.Time `json:"join_requested_at"`
}

func eventsScenario(ctx context.Context, o options, b binaries, dir string, out io.Writer) error {
	logw, err := logFile(dir, "events")
	if err != nil {
		return err
	}
	defer logw.Close()
	sim, simURL, err := startSim(b, simOptions{targetMode: "answer"}, logw)
	if err != nil {
		return err
	}
	defer sim.stop(5 * time.Second)
	d, api, err := startDaemon(b, o, daemonOptions{sim: simURL, dataDir: filepath.Join(dir, "data-events"), apiKey: o.apiKey}, logw)
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)
	eo := o.events
	fmt.Fprintf(out, "\nevents: NetSapiens auto transfers, transferd's default poll settings%s; answer delays uniform in [%s, %s]\n",
		envNote(o.transferdEnv), eo.minAnswer, eo.maxAnswer)
	tw := table(out)
	fmt.Fprintln(tw, "pass\ttransfers\tin one domain\tanswer→join p50 ms\tp99 ms\tmax ms\tprovider requests/transfer\t")

	// Pass 1: each transfer in a domain of its own, so that every
	// consult is its own watcher's only subscriber (the worst case for
	// sharing, the common case for latency).
	var seq int
	ids, reqs, err := eventsPass(ctx, o, api, simURL, eo.transfers, eo.concurrency, func() (string, string) {
		seq++
		return fmt.Sprintf("E%d", seq), "1000"
	})
	if err != nil {
		return err
	}
	if err := eventsRow(ctx, tw, simURL, "own domains", ids, 1, reqs); err != nil {
		return err
	}
	// Pass 2: all consulting at once in one domain.
	var user int
	ids, reqs, err = eventsPass(ctx, o, api, simURL, eo.oneDomain, eo.oneDomain, func() (string, string) {
		user++
		return "SHARED", fmt.Sprint(2000 + user)
	})
	if err != nil {
		return err
	}
	if err := eventsRow(ctx, tw, simURL, "one domain", ids, eo.oneDomain, reqs); err != nil {
		return err
	}
	return tw.Flush()
}

// envNote names the settings a run overrides.
func envNote(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return fmt.Sprintf(" (with %v)", env)
}

// eventsPass runs n auto transfers, c at once, each in the domain and by
// the user next returns, its target (1010) answering after a random
// delay. It returns the transfers' ids and the provider requests the
// pass cost.
func eventsPass(ctx context.Context, o options, api, sim string, n, c int, next func() (domain, user string)) ([]string, int64, error) {
	eo := o.events
	s0, err := stats(ctx, sim)
	if err != nil {
		return nil, 0, err
	}
	var (
		mu    sync.Mutex
		ids   []string
		first error
		wg    sync.WaitGroup
	)
	work := make(chan [2]string)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for du := range work {
				id, err := eventsTransfer(ctx, o, api, sim, du[0], du[1], eo)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		domain, user := next()
		select {
		case work <- [2]string{domain, user}:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		fmt.Fprintf(os.Stderr, "  events: %d of %d failed, first: %v\n", n-len(ids), n, first)
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	s1, err := stats(ctx, sim)
	if err != nil {
		return nil, 0, err
	}
	return ids, s1.NetSapiensRequests - s0.NetSapiensRequests, nil
}

// eventsTransfer places a call to user in domain, makes the target ring
// for a random delay and has transferd move the call to it.
func eventsTransfer(ctx context.Context, o options, api, sim, domain, user string, eo eventsOptions) (string, error) {
	delay := eo.minAnswer + rand.N(eo.maxAnswer-eo.minAnswer+1)
	if err := call(ctx, http.MethodPut, sim+"/sim/netsapiens/users/"+domain+"/1010/behaviour",
		map[string]string{"mode": "after", "delay": delay.String()}, http.StatusNoContent, nil); err != nil {
		return "", err
	}
	var call1 struct {
		SessionID string `json:"call-session-id"`
	}
	if err := call(ctx, http.MethodPost, sim+"/sim/netsapiens/calls",
		map[string]string{"domain": domain, "user": user, "from": "15555555555", "to": "11111111111"}, http.StatusCreated, &call1); err != nil {
		return "", err
	}
	t, err := o.createTransfer(ctx, api, map[string]any{"provider": "netsapiens",
		"call": map[string]string{"domain": domain, "user": user}, "target": "1010"}, "30")
	if err != nil {
		return "", err
	}
	if t.State != "completed" {
		return "", fmt.Errorf("transfer %s ended %s", t.ID, t.State)
	}
	_ = call(ctx, http.MethodPost, sim+"/sim/netsapiens/calls/"+call1.SessionID+"/hangup",
		map[string]string{"party": "orig"}, http.StatusNoContent, nil)
	return t.ID, nil
}

// eventsRow prints one pass: the answer-to-join latencies from the
// simulator's truth and the requests per transfer.
func eventsRow(ctx context.Context, tw io.Writer, sim, name string, ids []string, inDomain int, reqs int64) error {
	var truth struct {
		CallIDs []callIDTruth `json:"call_ids"`
	}
	if err := call(ctx, http.MethodGet, sim+"/sim/netsapiens/truth", nil, http.StatusOK, &truth); err != nil {
		return err
	}
	byID := map[string]callIDTruth{}
	for _, c := range truth.CallIDs {
		byID[c.CallID] = c
	}
	var lat []time.Duration
	for _, id := range ids {
		c, ok := byID[netsapiens.ConsultCallID(id)]
		if !ok || c.TargetAnsweredAt == nil || c.JoinRequestedAt == nil {
			return fmt.Errorf("no answer or join in the simulator's truth for %s (its history may be too short)", id)
		}
		lat = append(lat, c.JoinRequestedAt.Sub(*c.TargetAnsweredAt))
	}
	if len(lat) == 0 {
		return fmt.Errorf("%s: no transfer completed", name)
	}
	fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%.2f\t\n", name, len(ids), inDomain, ms(percentile(lat, 50)), ms(percentile(lat, 99)),
		ms(percentile(lat, 100)), float64(reqs)/float64(len(ids)))
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string { return fmt.Sprint(*m) }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}
