package record_test

import (
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/record"
	"github.com/transferd/transferd/internal/webhooks"
)

// fill sets every field reachable from v to a random value: strings with
// the characters encoding/json escapes, times in other zones and with
// odd fractions, nil or set pointers and slices.
func fill(r *rand.Rand, v reflect.Value) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		if r.IntN(5) == 0 {
			return // the zero time (omitzero)
		}
		zone := time.FixedZone("z", (r.IntN(49)-24)*30*60)
		v.Set(reflect.ValueOf(time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zone)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			// The outbox is not stored (json:"-"), and its events point
			// back at transfers.
			if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
				fill(r, v.Field(i))
			}
		}
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(r, v.Elem())
	case reflect.Slice:
		n := r.IntN(4)
		if n == 0 && r.IntN(2) == 0 {
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(r, v.Index(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for range r.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(r, k)
			fill(r, e)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		const chars = "aZ09 -_.@:/<>&'\"\\\n\t\r\b\f\x00\x1f\u2028\u2029éß☎\x7f"
		// Pieces of invalid UTF-8: a stray continuation byte, a
		// truncated sequence, a byte that never starts one.
		invalid := []string{"\x80", "\xe2\x80", "\xff"}
		rs := []rune(chars)
		var b []byte
		for range r.IntN(12) {
			if r.IntN(20) == 0 {
				b = append(b, invalid[r.IntN(len(invalid))]...)
				continue
			}
			b = utf8.AppendRune(b, rs[r.IntN(len(rs))])
		}
		v.SetString(string(b))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64N(1 << 40))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(r.NormFloat64() * 1e6)
	}
}

// TestSameBytesAsEncodingJSON: a record is stored as encoding/json wrote
// it before (older transferd reads it, and the stores' SQL reads its
// fields), and reads back as encoding/json reads it.
func TestSameBytesAsEncodingJSON(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range 2000 {
		var tr orchestrator.Transfer
		fill(r, reflect.ValueOf(&tr).Elem())
		want, err := json.Marshal(&tr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := record.Encode(&tr)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("record %d (seed %d):\nencoding/json: %s\nrecord:        %s", i, seed, want, got)
		}
		if str, err := record.EncodeString(&tr); err != nil || str != string(want) {
			t.Fatalf("record %d (seed %d): EncodeString %q, %v", i, seed, str, err)
		}
		var std orchestrator.Transfer
		if err := json.Unmarshal(want, &std); err != nil {
			t.Fatal(err)
		}
		back, err := record.Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, &std) {
			t.Fatalf("record %d (seed %d) read back:\nencoding/json: %+v\nrecord:        %+v", i, seed, &std, back)
		}
	}
}

// Times RFC 3339 cannot write (a year outside 0–9999, a zone of 24 hours
// or more) fail to encode, as in encoding/json; the edges succeed.
func TestEncodeRefusesTimesEncodingJSONRefuses(t *testing.T) {
	at := func(year, offset int) time.Time {
		return time.Date(year, 1, 2, 3, 4, 5, 6, time.FixedZone("z", offset))
	}
	for _, tm := range []time.Time{at(0, 0), at(9999, 0), at(10000, 0), at(-1, 0), at(2026, 23*3600+59*60),
		at(2026, -(23*3600 + 59*60)), at(2026, 24*3600), at(2026, -24*3600), at(2026, 99*3600), at(2026, 100*3600),
		at(2026, -100*3600), at(2026, 3600+30), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} {
		tr := orchestrator.Transfer{CreatedAt: tm}
		_, stdErr := json.Marshal(&tr)
		_, err := record.Encode(&tr)
		if (err == nil) != (stdErr == nil) {
			t.Errorf("%v: Encode error %v, encoding/json's %v", tm, err, stdErr)
		}
	}
}

func TestDecodeRejectsWhatEncodingJSONRejects(t *testing.T) {
	rejectsAsEncodingJSON(t, "Decode", record.Decode,
		``, `{`, `[]`, `{"version":"7"}`, `{"CreatedAt":"yesterday"}`, `{} x`)
}

// rejectsAsEncodingJSON checks that decode, named name, refuses each of
// bad, which encoding/json refuses as a T.
func rejectsAsEncodingJSON[T any](t *testing.T, name string, decode func([]byte) (T, error), bad ...string) {
	t.Helper()
	for _, b := range bad {
		var std T
		if json.Unmarshal([]byte(b), &std) == nil {
			t.Fatalf("encoding/json accepts %q", b)
		}
		if _, err := decode([]byte(b)); err == nil {
			t.Errorf("%s(%q) accepted what encoding/json rejects", name, b)
		}
	}
}

// BenchmarkRecord encodes and decodes a completed NetSapiens transfer with
// this package, with go-json-experiment's v1 package (the encoder before
// encode.go) and with encoding/json.
func BenchmarkRecord(b *testing.B) {
	tr := completed()
	enc, _ := json.Marshal(tr)
	b.Run("encode/record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := record.Encode(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/json-v1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonv1.Marshal(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := record.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t orchestrator.Transfer
			if err := json.Unmarshal(enc, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// completed is a transfer as a NetSapiens auto transfer ends.
func completed() *orchestrator.Transfer {
	at := time.Date(2026, 11, 30, 2, 46, 12, 963576115, time.UTC)
	step := func(name, detail string, from, to time.Duration) orchestrator.Step {
		return orchestrator.Step{Name: name, Status: "succeeded", StartedAt: at.Add(from), EndedAt: at.Add(to), Detail: detail}
	}
	tr := &orchestrator.Transfer{ID: "tr_01M8N5H0732AVTB2Y8K3368Y4J", Version: 7, Tenant: "default", State: "completed",
		Request: orchestrator.Request{Provider: "netsapiens", Mode: "attended", Target: "1010", Completion: "auto",
			ConsultTimeout: 30 * time.Second},
		Steps: []orchestrator.Step{step("locate", "", 1377625, 2422150), step("hold", "", 2455900, 3389500),
			step("dial", "", 3430900, 4283000), step("answered", "the target answered", 3265150000, 3265150000),
			step("transfer", "", 3265230000, 3266840000)},
		Answered: true, Outcome: &orchestrator.Outcome{Reason: "transferred", Verified: true, Detail: "the caller is connected to the target"},
		ConsultDeadline: at.Add(30 * time.Second), Owner: "vm", RequestID: "dc6e6t1ksduc1mvgsdog", EventSeq: 8,
		CreatedAt: at, UpdatedAt: at.Add(3507117559)}
	tr.Request.Call.Domain, tr.Request.Call.User = "TEST", "1000"
	tr.Legs.Caller.CallID, tr.Legs.Caller.SessionID, tr.Legs.Caller.Server = "0_3051823727@192.0.2.10", "20261130024612000002", "core1-sim.netsapiens.test"
	tr.Legs.Agent.CallID = "20261130024612000001-9904882e499b7fa06316e947f7f8c043"
	tr.Legs.Consult.CallID, tr.Legs.Consult.SessionID, tr.Legs.Consult.Server = "transferd-01m8n5h0732avtb2y8k3368y4j", "20261130024613000003", "core2-sim.netsapiens.test"
	tr.Sent.Hold, tr.Sent.Dial, tr.Sent.Join, tr.Sent.HoldSends = at.Add(2455700), at.Add(3430700), at.Add(3265230000), 1
	tr.Seen.Held, tr.Seen.Consult = true, true
	return tr
}

// TestDeliveryReadsAsEncodingJSON: a delivery's stored form, as the
// stores write it with encoding/json (and as PostgreSQL's jsonb gives it
// back, spaced and reordered), reads back as encoding/json reads it.
func TestDeliveryReadsAsEncodingJSON(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range 2000 {
		var d webhooks.Delivery
		fill(r, reflect.ValueOf(&d).Elem())
		stored, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			stored = jsonbLike(t, stored)
		}
		var std webhooks.Delivery
		if err := json.Unmarshal(stored, &std); err != nil {
			t.Fatal(err)
		}
		got, err := record.DecodeDelivery(stored)
		if err != nil {
			t.Fatalf("delivery %d (seed %d): %v", i, seed, err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("delivery %d (seed %d) read back:\nencoding/json: %+v\nrecord:        %+v", i, seed, std, got)
		}
	}
}

// jsonbLike rewrites an object as PostgreSQL's jsonb prints it: members
// sorted by the length of their names, then bytewise, with a space after
// each colon and comma.
func jsonbLike(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ", "...)
		}
		out = strconv.AppendQuote(out, k)
		out = append(out, ": "...)
		out = append(out, m[k]...)
	}
	return append(out, '}')
}

func TestDecodeDeliveryRejectsWhatEncodingJSONRejects(t *testing.T) {
	rejectsAsEncodingJSON(t, "DecodeDelivery", record.DecodeDelivery,
		``, `{`, `[]`, `{"Seq":"7"}`, `{"CreatedAt":"yesterday"}`, `{"Payload":"not base64!"}`, `{} x`)
}

// BenchmarkDelivery reads a delivery of a 2 KB payload with this package
// and with encoding/json.
func BenchmarkDelivery(b *testing.B) {
	now := time.Now().UTC()
	payload, err := json.Marshal(completed())
	if err != nil {
		b.Fatal(err)
	}
	stored, err := json.Marshal(webhooks.Delivery{ID: "dlv_0123456789abcdef", Tenant: "default", Endpoint: "default",
		EventID: "evt_01M8VBKEFYR89G4NM8RTHGEGHE_3", TransferID: "tr_01M8VBKEFYR89G4NM8RTHGEGHE", Seq: 3, Pos: 12345,
		Type: orchestrator.EventStateChanged, Payload: payload, Status: webhooks.StatusPending, Attempts: 1, NextAttempt: now,
		Owner: "replica-1", LeaseUntil: now, Deadline: now, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("record", func(b *testing.B) {
		for b.Loop() {
			if _, err := record.DecodeDelivery(stored); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var d webhooks.Delivery
			if err := json.Unmarshal(stored, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A record or delivery that could not be decoded matches ErrUndecodable,
// which the API answers as a bug (500), not as a store that could not be
// read (503: retry); the message and the decoder's error are kept.
func TestUndecodableIsToldApart(t *testing.T) {
	_, err := record.Decode([]byte(`{"id":`))
	var syntax *jsonv1.SyntaxError
	if !errors.Is(err, orchestrator.ErrUndecodable) || !errors.As(err, &syntax) || !strings.HasPrefix(err.Error(), "decode record: ") {
		t.Errorf("Decode of a truncated record: %v; want ErrUndecodable, the decoder's error, \"decode record: \"", err)
	}
	_, err = record.DecodeDelivery([]byte(`[`))
	if !errors.Is(err, orchestrator.ErrUndecodable) || !strings.HasPrefix(err.Error(), "decode delivery: ") {
		t.Errorf("DecodeDelivery of a bad delivery: %v; want ErrUndecodable, \"decode delivery: \"", err)
	}
}
