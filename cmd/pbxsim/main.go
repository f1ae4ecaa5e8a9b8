// Command pbxsim serves transferd's provider simulators (NetSapiens NS
// API v2 and Bandwidth Catapult v1) as a standalone server, for CRM
// developers and load tests. It listens on loopback by default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/transferd/transferd/internal/pbxsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pbxsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pbxsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	actionDelay := fs.Duration("action-delay", 200*time.Millisecond, "delay before an accepted NetSapiens action (hold, transfer…) takes effect")
	subscriptionWriteDelay := fs.Duration("subscription-write-delay", 0, "delay before a NetSapiens subscription create, renewal or delete takes effect (0: at once)")
	answerDelay := fs.Duration("answer-delay", 3*time.Second, "how long a target rings before answering by default")
	targetMode := fs.String("target-mode", "after", "how targets without a behaviour of their own react when rung: answer (at once), after (-answer-delay), never (ring until -ring-timeout), manual")
	ringTimeout := fs.Duration("ring-timeout", time.Minute, "how long a leg that nobody answers rings before it ends; load tests that park consults set it long")
	historyLimit := fs.Int("history-limit", 0, "bound on the recorded requests and ended calls (0 keeps everything); load tests set it so that memory stays bounded")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch *targetMode {
	case "answer", "after", "never", "manual":
	default:
		return fmt.Errorf("-target-mode %q: want answer, after, never or manual", *targetMode)
	}
	if *subscriptionWriteDelay < 0 {
		return fmt.Errorf("-subscription-write-delay %v: must not be negative", *subscriptionWriteDelay)
	}
	if *historyLimit < 0 {
		return fmt.Errorf("-history-limit %d: must not be negative", *historyLimit)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	cfg := pbxsim.DemoConfig(base)
	cfg.NetSapiens.ActionDelay = *actionDelay
	cfg.NetSapiens.SubscriptionWriteDelay = *subscriptionWriteDelay
	cfg.NetSapiens.AnswerDelay = *answerDelay
	cfg.Bandwidth.AnswerDelay = *answerDelay
	// Both simulators name their modes alike.
	cfg.NetSapiens.DefaultBehaviour.Mode = *targetMode
	cfg.Bandwidth.DefaultBehaviour.Mode = *targetMode
	cfg.NetSapiens.RingTimeout = *ringTimeout
	cfg.Bandwidth.RingTimeout = *ringTimeout
	cfg.NetSapiens.HistoryLimit = *historyLimit
	cfg.Bandwidth.MaxRecords = *historyLimit
	sim := pbxsim.New(cfg)
	defer sim.Close()
	ln = sim.CountConnections(ln)
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "pbxsim listening on %s\n  NetSapiens API: %s%s (bearer %s)\n  Bandwidth API:  %s%s (user %s, basic %s:%s)\n  control:        %s%s, %s%s\n",
		base, base, pbxsim.NetSapiensAPIPath, pbxsim.DemoNetSapiensKey,
		base, pbxsim.BandwidthAPIPath, pbxsim.DemoBandwidthUser, pbxsim.DemoBandwidthTok, pbxsim.DemoBandwidthSec,
		base, pbxsim.NetSapiensControlPath, base, pbxsim.BandwidthControlPath)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
