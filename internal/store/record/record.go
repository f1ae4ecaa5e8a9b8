// Package record is the stored form of a transfer: the JSON both stores
// keep in a transfer's row and in each event's snapshot.
//
// The encoding is encoding/json's, produced by go-json-experiment's v1
// package: the same bytes (TestSameBytesAsEncodingJSON), so that records
// stay readable by older transferd and by the stores' own JSON queries,
// from an implementation that handles time.Time natively instead of
// calling its MarshalJSON and re-validating the result: about 45 % less
// CPU to encode and to decode (BenchmarkRecord). A record is
// encoded at every save and was 5 % of transferd's CPU under load. The
// package is a mirror of encoding/json/v2, which Go 1.27 makes the
// implementation of encoding/json itself.
package record

import (
	"fmt"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Encode is the stored form of t.
func Encode(t *orchestrator.Transfer) ([]byte, error) {
	b, err := jsonv1.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

// Decode reads a stored form.
func Decode(b []byte) (*orchestrator.Transfer, error) {
	t := new(orchestrator.Transfer)
	if err := jsonv1.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return t, nil
}
