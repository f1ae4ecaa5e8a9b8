// Package pbxsim serves the provider simulators side by side on one HTTP
// handler, the way cmd/pbxsim and transferd's demo mode expose them:
//
//	/ns-api/v2/...      NetSapiens NS API v2
//	/sim/netsapiens/... its control surface
//	/v1/...             Bandwidth Catapult v1
//	/sim/bandwidth/...  its control surface
//	/sim/stats          connections accepted and API requests served (Stats)
package pbxsim

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Mount points.
const (
	NetSapiensAPIPath     = "/ns-api/v2"
	NetSapiensControlPath = "/sim/netsapiens"
	BandwidthAPIPath      = "/v1"
	BandwidthControlPath  = "/sim/bandwidth"
)

// Demo credentials. They only ever open the loopback simulator.
const (
	DemoNetSapiensKey = "nsd_demoDemoDemoDemoDemoDemoDemoDemoDemoDemoDemoDemo0000demo"
	DemoBandwidthUser = "u-demo"
	DemoBandwidthTok  = "t-demo"
	DemoBandwidthSec  = "s-demo"
	DemoDomain        = "TEST"
)

// Config configures both simulators.
type Config struct {
	NetSapiens nssim.Config
	Bandwidth  bwsim.Config
}

// DemoConfig is what demo mode and a bare cmd/pbxsim run: the demo
// credentials, a short delay before 202 actions take effect (so that a
// person with curl can see each state), and targets that answer after a
// couple of seconds.
func DemoConfig(baseURL string) Config {
	return Config{
		NetSapiens: nssim.Config{
			APIKeys:          map[string]nssim.KeyScope{DemoNetSapiensKey: {Domain: "*"}},
			ActionDelay:      200 * time.Millisecond,
			AnswerDelay:      3 * time.Second,
			DefaultBehaviour: nssim.Behaviour{Mode: nssim.ModeAfter},
		},
		Bandwidth: bwsim.Config{
			UserID: DemoBandwidthUser, Token: DemoBandwidthTok, Secret: DemoBandwidthSec,
			OwnedNumbers:     []string{"+15555550100", "+15555550199"},
			BaseURL:          strings.TrimRight(baseURL, "/") + BandwidthAPIPath,
			AnswerDelay:      3 * time.Second,
			DefaultBehaviour: bwsim.Behaviour{Mode: bwsim.ModeAfter},
		},
	}
}

// Server holds both simulators.
type Server struct {
	NetSapiens *nssim.Sim
	Bandwidth  *bwsim.Sim
	mux        *http.ServeMux

	mu      sync.Mutex
	closers []func()
	closed  bool

	// Counters for load tests: they are what a benchmark divides by the
	// transfers it ran, and unlike the simulators' request histories they
	// are never trimmed.
	conns, nsRequests, bwRequests atomic.Int64
}

// Stats is what GET /sim/stats answers: how many TCP connections the
// listeners given to CountConnections accepted, and how many requests
// each provider API served (control requests are not counted). A client
// that reuses its connections opens few; one that does not opens one per
// request.
type Stats struct {
	Connections        int64 `json:"connections"`
	NetSapiensRequests int64 `json:"netsapiens_requests"`
	BandwidthRequests  int64 `json:"bandwidth_requests"`
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Connections: s.conns.Load(), NetSapiensRequests: s.nsRequests.Load(), BandwidthRequests: s.bwRequests.Load()}
}

// CountConnections wraps ln so that every connection it accepts is
// counted in Stats.
func (s *Server) CountConnections(ln net.Listener) net.Listener {
	return countingListener{Listener: ln, n: &s.conns}
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func counted(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// New builds both simulators.
func New(cfg Config) *Server {
	s := &Server{NetSapiens: nssim.New(cfg.NetSapiens), Bandwidth: bwsim.New(cfg.Bandwidth), mux: http.NewServeMux()}
	mount := func(prefix string, h http.Handler) {
		s.mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
	}
	mount(NetSapiensAPIPath, counted(s.NetSapiens.APIHandler(), &s.nsRequests))
	mount(NetSapiensControlPath, s.NetSapiens.ControlHandler())
	mount(BandwidthAPIPath, counted(s.Bandwidth.APIHandler(), &s.bwRequests))
	mount(BandwidthControlPath, s.Bandwidth.ControlHandler())
	s.mux.HandleFunc("GET /{$}", index)
	s.mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	})
	return s
}

// Handler serves every simulator and control surface.
func (s *Server) Handler() http.Handler { return s.mux }

// OnClose registers f to run on Close (e.g. stopping the HTTP server).
func (s *Server) OnClose(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, f)
}

// Close stops the simulators' timers and runs the OnClose functions.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	closers := s.closers
	s.mu.Unlock()
	for _, f := range closers {
		f()
	}
	s.NetSapiens.Close()
	s.Bandwidth.Close()
}

func index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"simulators": map[string]any{
			"netsapiens": map[string]string{"api": NetSapiensAPIPath, "control": NetSapiensControlPath},
			"bandwidth":  map[string]string{"api": BandwidthAPIPath, "control": BandwidthControlPath},
		},
		"note": "Calls here are simulated. See the README for the control endpoints.",
	})
}
