package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/pbxsim"
)

// startDemo serves the provider simulator on a loopback address, so that
// the adapters talk to it over real HTTP exactly as to a real provider.
// run closes it last, after in-flight transfers compensated against it.
func startDemo(addr string, log zerolog.Logger) (*pbxsim.Server, string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("TRANSFERD_DEMO_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, "", fmt.Errorf("TRANSFERD_DEMO_ADDR: the simulator only listens on loopback, not %q", host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// Named by its variable: the default port, 8081, is often taken.
		return nil, "", fmt.Errorf("TRANSFERD_DEMO_ADDR: the demo simulator cannot listen on %s: %w", addr, err)
	}
	sim := pbxsim.New(pbxsim.DemoConfig("http://" + ln.Addr().String()))
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error().Err(err).Msg("demo simulator stopped")
		}
	}()
	sim.OnClose(func() { _ = srv.Close() })
	return sim, ln.Addr().String(), nil
}
