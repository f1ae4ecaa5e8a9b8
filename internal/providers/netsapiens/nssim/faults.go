package nssim

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Operation names, as Fault.Operation and Request.Operation use them.
const (
	OpList         = "list"         // GET /domains/{d}/calls, GET .../users/{u}/calls
	OpCount        = "count"        // GET .../calls/count
	OpRead         = "read"         // GET .../users/{u}/calls/{callid}
	OpCreate       = "create"       // POST .../users/{u}/calls
	OpAnswer       = "answer"       // PATCH .../calls/{call_id}/answer
	OpHold         = "hold"         // PATCH .../calls/{call_id}/hold
	OpUnhold       = "unhold"       // PATCH .../calls/{call_id}/unhold
	OpTransfer     = "transfer"     // PATCH .../calls/{call_id}/transfer
	OpTransferPeer = "transferPeer" // PATCH .../calls/{call_id}/transferPeer
	OpDisconnect   = "disconnect"   // DELETE .../calls/{call_id}
	OpReject       = "reject"       // DELETE .../calls/{call_id}/reject
	OpAny          = "any"          // every request, unknown routes included
)

// Fault changes how the API answers requests of one operation, for chaos and retry tests.
// NetSapiens documents no 429, no 5xx and no Retry-After; faults are how a test reaches
// those paths anyway.
type Fault struct {
	// Operation is one of the Op constants; "" means OpAny.
	Operation string
	// Status, when not 0, is answered instead of the normal response, with the body
	// {"code":Status,"message":Message}.
	Status int
	// Message defaults to the status text.
	Message string
	// Count is how many requests the fault applies to; 0 means until ClearFaults.
	Count int
	// Latency delays the response (or the drop) by this much; a client that gives up first
	// cancels the request, which is then recorded with Status 0 and not performed.
	Latency time.Duration
	// Drop closes the connection without any response. Go's http.Transport silently retries
	// an idempotent request (GET) that failed this way on a reused connection, so drop
	// tests are clearest on PATCH, POST and DELETE.
	Drop bool
	// Apply performs the operation before the response is replaced (Status) or lost (Drop):
	// the case that makes blind retries of non-idempotent requests dangerous.
	Apply bool
	// RetryAfter, with Status, is sent as the Retry-After header.
	RetryAfter string
	// Body, with Status, is answered verbatim (as application/json) instead of
	// {"code":Status,"message":Message}: with Status 200 on OpRead, a read of a call that
	// answers without the call asked for ("{}", "[]", "null", another call's row, "" for an
	// empty body), or that answers it as a list ("[{…}]") where the spec gives one object.
	Body *string
}

// Validate reports a fault the simulator cannot apply.
func (f Fault) Validate() error {
	switch {
	case !knownOperation(f.Operation):
		return fmt.Errorf("%w: unknown operation %q; one of %v", ErrInvalid, f.Operation, operations)
	case f.Status != 0 && (f.Status < 100 || f.Status > 599):
		return fmt.Errorf("%w: status %d", ErrInvalid, f.Status)
	case f.Count < 0:
		return fmt.Errorf("%w: negative count %d", ErrInvalid, f.Count)
	case f.Latency < 0:
		return fmt.Errorf("%w: negative latency %v", ErrInvalid, f.Latency)
	case f.Body != nil && f.Status == 0:
		return fmt.Errorf("%w: a body needs a status", ErrInvalid)
	case f.Status == 0 && !f.Drop && f.Latency == 0:
		// It would change no answer, and, the oldest fault of its
		// operation applying, would hide every fault posted after it.
		return fmt.Errorf("%w: a fault needs a status, drop or latency", ErrInvalid)
	}
	return nil
}

// operations are the names a fault may take, as the requests list shows them.
var operations = []string{OpList, OpCount, OpRead, OpCreate, OpAnswer, OpHold, OpUnhold, OpTransfer, OpTransferPeer,
	OpDisconnect, OpReject, OpSubscriptionCreate, OpSubscriptionList, OpSubscriptionRead,
	OpSubscriptionUpdate, OpSubscriptionDelete, OpAny}

func knownOperation(op string) bool {
	return op == "" || slices.Contains(operations, op)
}

type faultState struct {
	f         Fault
	remaining int // 0 = unlimited
}

// InjectFault adds a fault. The oldest matching fault applies to each request.
func (s *Sim) InjectFault(f Fault) {
	if f.Operation == "" {
		f.Operation = OpAny
	}
	if f.Body != nil {
		body := *f.Body
		f.Body = &body
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{f: f, remaining: f.Count})
}

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults returns the active faults, with Count holding how many uses are left (0 = unlimited).
func (s *Sim) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, fs := range s.faults {
		f := fs.f
		f.Count = fs.remaining
		out = append(out, f)
	}
	return out
}

// takeFault returns the fault for a request of op and uses it up once.
func (s *Sim) takeFault(op string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, fs := range s.faults {
		if fs.f.Operation != OpAny && fs.f.Operation != op {
			continue
		}
		if fs.remaining > 0 {
			fs.remaining--
			if fs.remaining == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return fs.f, true
	}
	return Fault{}, false
}

// dropConnection ends the exchange without a response.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// HTTP/2 cannot be hijacked; aborting the handler resets the stream instead.
	panic(http.ErrAbortHandler)
}

// discardWriter swallows the response of an operation whose response a fault replaces.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header {
	if d.h == nil {
		d.h = make(http.Header)
	}
	return d.h
}
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
