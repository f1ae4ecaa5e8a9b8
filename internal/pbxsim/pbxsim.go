// Package pbxsim serves the provider simulators side by side on one HTTP
// handler, the way cmd/pbxsim and transferd's demo mode expose them:
//
//	/ns-api/v2/...      NetSapiens NS API v2
//	/sim/netsapiens/... its control surface
//	/v1/...             Bandwidth Catapult v1
//	/sim/bandwidth/...  its control surface
package pbxsim

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
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
}

// New builds both simulators.
func New(cfg Config) *Server {
	s := &Server{NetSapiens: nssim.New(cfg.NetSapiens), Bandwidth: bwsim.New(cfg.Bandwidth), mux: http.NewServeMux()}
	mount := func(prefix string, h http.Handler) {
		s.mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
	}
	mount(NetSapiensAPIPath, s.NetSapiens.APIHandler())
	mount(NetSapiensControlPath, s.NetSapiens.ControlHandler())
	mount(BandwidthAPIPath, s.Bandwidth.APIHandler())
	mount(BandwidthControlPath, s.Bandwidth.ControlHandler())
	s.mux.HandleFunc("GET /{$}", index)
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
