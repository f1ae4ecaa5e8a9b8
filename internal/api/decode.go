package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// maxBody bounds a request body; a transfer request is a few hundred bytes.
const maxBody = 64 << 10

// validator is implemented by request bodies that check themselves.
type validator interface {
	// Valid returns a problem per bad field (JSON path), empty when valid.
	Valid(ctx context.Context) map[string]string
}

// readBody reads a bounded request body after checking its media type.
// On failure it writes the problem and returns false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	for _, ce := range r.Header.Values("Content-Encoding") {
		if c := strings.TrimSpace(ce); c != "" && !strings.EqualFold(c, "identity") {
			// A compressed body read as it came is bytes no JSON parser
			// takes, and "invalid JSON at byte 1" would not say why.
			p := probMediaType
			p.Detail = "send the body without a content coding (no Content-Encoding, or identity)"
			w.Header().Set("Accept-Encoding", "identity")
			writeProblem(w, r, p)
			return nil, false
		}
	}
	if cts := r.Header.Values("Content-Type"); len(cts) > 1 || len(cts) == 1 && cts[0] != "" {
		mt, _, err := mime.ParseMediaType(cts[0])
		// Two Content-Types are no media type: a filter that read the
		// other one would have let through a body it did not inspect.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) || len(cts) > 1 {
			p := probMediaType
			p.Detail = "send Content-Type: application/json"
			if len(cts) > 1 {
				p.Detail = "send one Content-Type: application/json"
			}
			writeProblem(w, r, p)
			return nil, false
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The rest of the body may still come; the connection cannot
			// serve another request.
			w.Header().Set("Connection", "close")
		}
		writeDecodeError(w, r, err)
		return nil, false
	}
	return data, true
}

// bodyDeadline bounds the time a request's body may take to arrive,
// counted from when its handler starts: the server's read timeout bounds
// the whole request, and a body sent a byte at a time would otherwise hold
// a handler (and its tenant's idempotency reservation) that long. A read
// past the deadline fails; readBody answers 408. Requests without a body
// are left alone (a long poll's wait is no body).
func bodyDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
				rc := http.NewResponseController(w)
				if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
					zerolog.Ctx(r.Context()).Debug().Err(err).Msg("cannot set the body read deadline")
				} else {
					r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody lifts the body's read deadline once the body has been read
// whole. The server then keeps a read pending to notice the client
// leaving; were that read to time out, it would cancel the request's
// context and with it whatever the handler still does.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// decode decodes data strictly into v: unknown fields, wrong JSON types
// and trailing data are errors. On failure it writes the problem, which
// names every unknown or mistyped field, and returns false.
func decode(w http.ResponseWriter, r *http.Request, data []byte, v any) bool {
	bad, p := decodeFields(data, v)
	if p != nil {
		writeProblem(w, r, *p)
		return false
	}
	if len(bad) > 0 {
		writeProblem(w, r, fieldProblem(probValidation, bad))
		return false
	}
	return true
}

// decodeFields decodes data into v. A body that is not one JSON value is
// a problem; a body of the wrong shape decodes as far as it can (so that
// its other fields can still be checked) and every unknown or mistyped
// field is returned by JSON path. A null is a mistyped value wherever the
// field has a JSON type: encoding/json reads it as the field left out, so
// "metadata": {"k": null} would be stored as "" and "mode": null taken
// for the default. A string field v names in nonEmpty is refused when
// sent empty, which encoding/json cannot tell from left out either.
func decodeFields(data []byte, v any) (map[string]string, *Problem) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			p := probMalformed
			p.Detail = "the body must hold exactly one JSON object"
			return nil, &p
		}
		if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] != '{' {
			// encoding/json decodes the literal null into a struct
			// without error, as if nothing had been sent: it is a value
			// of the wrong type, like an array.
			return map[string]string{"(body)": "must be a JSON object"}, nil
		}
	}
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) && !strings.HasPrefix(err.Error(), "json: unknown field ") {
		p := decodeProblem(err)
		return nil, &p
	}
	names, p := checkNames(data, reflect.TypeOf(v))
	if p != nil {
		return nil, p
	}
	if err == nil && len(names) == 0 && !bytes.Contains(data, []byte("null")) && !bytes.Contains(data, []byte(`""`)) &&
		!bytes.Contains(data, []byte(`\u0000`)) {
		// Decoded whole, with no null, no empty string and no U+0000
		// (which JSON text can only escape) the walk below could find:
		// a valid create, the common case, is not parsed a third time.
		return nil, nil
	}
	// encoding/json stops at the first unknown field, reports only the
	// first mistyped one and takes a null for a value left out; walk the
	// document for all of them.
	var doc any
	if json.Unmarshal(data, &doc) != nil {
		p := decodeProblem(err)
		return nil, &p
	}
	bad := map[string]string{}
	walkFields(doc, reflect.TypeOf(v), "", bad)
	if ne, ok := v.(nonEmptier); ok {
		for _, path := range ne.nonEmpty() {
			if _, ok := bad[path]; !ok && emptyAt(doc, path) {
				bad[path] = "must not be empty: leave the field out, or give it a value"
			}
		}
	}
	// A name sent twice or in another case says more than what the walk,
	// which saw the last of the values under it, found there.
	maps.Copy(bad, names)
	if err == nil {
		return bad, nil
	}
	if len(bad) == 0 {
		// A shape the walk does not model: report what the decoder said.
		field := "(body)"
		if typeErr != nil && typeErr.Field != "" {
			field = typeErr.Field
		}
		bad[field] = "has the wrong JSON type"
	}
	// Lenient decode of the rest: json.Unmarshal skips mistyped values
	// and, without DisallowUnknownFields, unknown ones.
	_ = json.Unmarshal(data, v)
	return bad, nil
}

// nonEmptier is a body with string fields that, when sent, may not be
// empty (openapi.yaml gives them minLength 1, an enum or a pattern).
type nonEmptier interface {
	// nonEmpty lists those fields by JSON path ("call.call_id").
	nonEmpty() []string
}

// emptyAt reports whether doc holds the empty string at path (dotted
// object keys, matched case-insensitively, as encoding/json does).
func emptyAt(doc any, path string) bool {
	for name := range strings.SplitSeq(path, ".") {
		obj, ok := doc.(map[string]any)
		if !ok {
			return false
		}
		doc = nil
		for k, v := range obj {
			if strings.EqualFold(k, name) {
				doc = v
				break
			}
		}
	}
	s, ok := doc.(string)
	return ok && s == ""
}

// decodeProblem words a decoding failure that is not about one field.
func decodeProblem(err error) Problem {
	var (
		tooBig *http.MaxBytesError
		syntax *json.SyntaxError
	)
	p := probMalformed
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		p = probBodyTimeout
		p.Detail = "the body was not received within the server's body read deadline"
	case errors.As(err, &tooBig):
		p = probTooLarge
		p.Detail = fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		p.Detail = "the body is empty; send a JSON object"
	case errors.As(err, &syntax):
		p.Detail = fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF):
		p.Detail = "the JSON body ends early"
	default:
		p.Detail = "the body could not be decoded: " + err.Error()
	}
	return p
}

// decodeValid reads, decodes and validates a body into v.
func decodeValid[T validator](w http.ResponseWriter, r *http.Request, v T) bool {
	data, ok := readBody(w, r)
	if !ok || !decode(w, r, data, v) {
		return false
	}
	if bad := v.Valid(r.Context()); len(bad) > 0 {
		writeProblem(w, r, fieldProblem(probValidation, bad))
		return false
	}
	return true
}

func writeDecodeError(w http.ResponseWriter, r *http.Request, err error) {
	writeProblem(w, r, decodeProblem(err))
}

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// walkFields records in bad every field of doc (a decoded JSON value)
// that t does not declare, every value whose JSON type t cannot hold,
// null included, and every string holding U+0000, by JSON path. Names
// match case-insensitively, as encoding/json does.
func walkFields(doc any, t reflect.Type, prefix string, bad map[string]string) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	field := strings.TrimSuffix(prefix, ".")
	if field == "" {
		field = "(body)"
	}
	if s, ok := doc.(string); ok && strings.ContainsRune(s, 0) {
		// No field means anything by it, and PostgreSQL refuses it in
		// a column (a NetSapiens call_id, a sip: target): the save of
		// the transfer failed, a 503 for the client's mistake.
		bad[field] = "must not hold the character U+0000"
		return
	}
	if t == nil || reflect.PointerTo(t).Implements(unmarshaler) {
		return
	}
	if want := jsonKindOf(t); want != "" && want != jsonKindOfValue(doc) {
		bad[field] = "must be a JSON " + want
		if doc == nil {
			bad[field] += ", not null"
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj := doc.(map[string]any)
		fields := fieldsOf(t)
		for k, v := range obj {
			name, ok := fields.folded[strings.ToLower(k)]
			ft := fields.exact[name]
			if !ok {
				bad[prefix+k] = "is not a known field"
				continue
			}
			walkFields(v, ft, prefix+k+".", bad)
		}
	case reflect.Slice, reflect.Array:
		for i, v := range doc.([]any) {
			walkFields(v, t.Elem(), fmt.Sprintf("%s[%d].", field, i), bad)
		}
	case reflect.Map:
		for k, v := range doc.(map[string]any) {
			walkFields(v, t.Elem(), prefix+k+".", bad)
		}
	}
}

// unmarshaler types decode themselves; the walk takes them as they are.
var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// jsonKindOf is the JSON type a Go type decodes from ("" for any).
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	default:
		return ""
	}
}

// jsonKindOfValue is the JSON type of a value json.Unmarshal made.
func jsonKindOfValue(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return ""
	}
}
