package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
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
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			p := probMediaType
			p.Detail = "send Content-Type: application/json"
			writeProblem(w, r, p)
			return nil, false
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeDecodeError(w, r, err, nil, nil)
		return nil, false
	}
	return data, true
}

// decode decodes data strictly into v: unknown fields and trailing data
// are errors. On failure it writes the problem and returns false.
func decode(w http.ResponseWriter, r *http.Request, data []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeDecodeError(w, r, err, data, v)
		return false
	}
	if dec.More() {
		p := probMalformed
		p.Detail = "the body must hold exactly one JSON object"
		writeProblem(w, r, p)
		return false
	}
	return true
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

func writeDecodeError(w http.ResponseWriter, r *http.Request, err error, data []byte, v any) {
	var (
		tooBig  *http.MaxBytesError
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	p := probMalformed
	switch {
	case errors.As(err, &tooBig):
		p = probTooLarge
		p.Detail = fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		p.Detail = "the body is empty; send a JSON object"
	case errors.As(err, &syntax):
		p.Detail = fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		p = fieldProblem(probValidation, map[string]string{field: "must be a JSON " + jsonType(typeErr.Type.Kind().String())})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if path := unknownField(data, reflect.TypeOf(v)); path != "" {
			field = path
		}
		p = fieldProblem(probValidation, map[string]string{field: "is not a known field"})
	case errors.Is(err, io.ErrUnexpectedEOF):
		p.Detail = "the JSON body ends early"
	default:
		p.Detail = "the body could not be decoded: " + err.Error()
	}
	writeProblem(w, r, p)
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map", "ptr":
		return "object"
	case "slice", "array":
		return "array"
	default:
		return "number"
	}
}

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// unknownField returns the JSON path of the first field in data that t
// does not declare; encoding/json names only the field, not its path.
func unknownField(data []byte, t reflect.Type) string {
	var doc any
	if json.Unmarshal(data, &doc) != nil {
		return ""
	}
	return walkUnknown(doc, t, "")
}

func walkUnknown(doc any, t reflect.Type, prefix string) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	obj, ok := doc.(map[string]any)
	if !ok || t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" {
			if name == "" {
				name = f.Name
			}
			fields[strings.ToLower(name)] = f.Type
		}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ft, ok := fields[strings.ToLower(k)]
		if !ok {
			return prefix + k
		}
		if path := walkUnknown(obj[k], ft, prefix+k+"."); path != "" {
			return path
		}
	}
	return ""
}
