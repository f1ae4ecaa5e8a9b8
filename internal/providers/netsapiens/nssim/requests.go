package nssim

import (
	"net/http"
	"time"
)

// Request is one request the API handler received. The credential itself is never kept.
type Request struct {
	Method string `json:"method"`
	// Path is relative to the API handler, e.g. "/domains/TEST/calls".
	Path  string `json:"path"`
	Query string `json:"query"`
	Body  string `json:"body"`
	// Operation is one of the Op constants, or "" for an unknown route.
	Operation string `json:"operation"`
	// Status is the status sent, or 0 when no response was sent (dropped connection, or the
	// client gave up during injected latency).
	Status int       `json:"status"`
	Time   time.Time `json:"time"`
	// Authorization reports whether an Authorization header was presented.
	Authorization bool `json:"authorization"`
	// Injected names the fault that hit the request, injected (InjectFault) or drawn
	// (Chaos), or is "" for none: one of the Injected constants. InjectedAppliedDrop and
	// InjectedAppliedStatus mean the request was performed although the client was told
	// otherwise or nothing.
	Injected string `json:"injected,omitempty"`
}

// Values of Request.Injected.
const (
	InjectedLatency       = "latency"        // delayed, then answered normally
	InjectedStatus        = "status"         // answered with the fault's status, not performed
	InjectedDrop          = "drop"           // connection closed, not performed
	InjectedAppliedStatus = "applied+status" // performed, then answered with the fault's status
	InjectedAppliedDrop   = "applied+drop"   // performed, then the connection closed
)

// injected names what f does to a request, as Request.Injected reports it.
func (f Fault) injected() string {
	switch {
	case f.Drop && f.Apply:
		return InjectedAppliedDrop
	case f.Drop:
		return InjectedDrop
	case f.Status != 0 && f.Apply:
		return InjectedAppliedStatus
	case f.Status != 0:
		return InjectedStatus
	case f.Latency > 0:
		return InjectedLatency
	}
	return ""
}

func (s *Sim) markInjected(rec *Request, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Injected = what
}

// Requests returns every API request received since the last reset, oldest first.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	reqs := newest(s.requests, s.cfg.HistoryLimit)
	out := make([]Request, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, *r)
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.notifyLocked()
}

// beginRequest records a request as it arrives, so the log keeps arrival order even when
// responses finish out of order.
func (s *Sim) beginRequest(r *http.Request, op string, body []byte) *Request {
	rec := &Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Body:          string(body),
		Operation:     op,
		Time:          s.cfg.Now(),
		Authorization: r.Header.Get("Authorization") != "",
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = appendBounded(s.requests, rec, s.cfg.HistoryLimit)
	s.notifyLocked()
	return rec
}

func (s *Sim) finishRequest(rec *Request, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
	s.notifyLocked()
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
