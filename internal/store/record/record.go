// Package record is the stored form of a transfer: the JSON both stores
// keep in a transfer's row and in each event's snapshot; and the reading
// of a webhook delivery's.
//
// The encoding is encoding/json's, so that records stay readable by older
// transferd and by the stores' own JSON queries: the same bytes
// (TestSameBytesAsEncodingJSON). Records are written by a hand-written
// encoder (encode.go) and read by go-json-experiment's v1 package, which
// handles time.Time natively instead of calling its UnmarshalJSON: about
// 45 % less CPU to decode than encoding/json (BenchmarkRecord). That
// package is a mirror of encoding/json/v2, which Go 1.27 makes the
// implementation of encoding/json itself.
package record

import (
	"fmt"
	"unsafe"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// Encode is the stored form of t (encode.go).
func Encode(t *orchestrator.Transfer) ([]byte, error) {
	// Most records are 1.4–2 KB: one allocation for the common case.
	e := encoder{b: make([]byte, 0, 2048)}
	e.transfer(t)
	if e.err != nil {
		return nil, fmt.Errorf("encode record: %w", e.err)
	}
	return e.b, nil
}

// EncodeString is Encode as a string, without copying the bytes: for a
// store that binds the record as text (SQLite), where a conversion copied
// every record once more (a twentieth of the bytes transferd allocated per
// transfer).
func EncodeString(t *orchestrator.Transfer) (string, error) {
	b, err := Encode(t)
	if err != nil || len(b) == 0 {
		return "", err
	}
	// The bytes are Encode's own and nothing else refers to them or
	// writes them again, which is what a string needs (as in
	// strings.Builder.String).
	return unsafe.String(&b[0], len(b)), nil
}

// Decode reads a stored form.
func Decode(b []byte) (*orchestrator.Transfer, error) {
	t := new(orchestrator.Transfer)
	if err := jsonv1.Unmarshal(b, t); err != nil {
		return nil, &decodeError{what: "record", err: err}
	}
	return t, nil
}

// DecodeDelivery reads the stored form of a webhook delivery, which both
// stores write with encoding/json. A delivery is read at its claim and
// again at its result; go-json-experiment's v1 package reads it (its
// payload in base64) in about 40 % of encoding/json's time
// (BenchmarkDelivery).
func DecodeDelivery(b []byte) (webhooks.Delivery, error) {
	var d webhooks.Delivery
	if err := jsonv1.Unmarshal(b, &d); err != nil {
		return webhooks.Delivery{}, &decodeError{what: "delivery", err: err}
	}
	return d, nil
}

// decodeError is a stored form that could not be read: it matches
// orchestrator.ErrUndecodable, so that the API tells a corrupt record (a
// bug, a 500) from a store that could not be read (a 503: retry).
type decodeError struct {
	what string
	err  error
}

func (e *decodeError) Error() string   { return "decode " + e.what + ": " + e.err.Error() }
func (e *decodeError) Unwrap() []error { return []error{orchestrator.ErrUndecodable, e.err} }
