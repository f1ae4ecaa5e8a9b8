package api

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// checkNames reads a request body that encoding/json accepted once more,
// for what encoding/json lets through without a word:
//
//   - A member name sent twice ({"target":"1010","target":"1020"}):
//     encoding/json keeps the last. A proxy, gateway or log that keeps the
//     first would see another request than the one transferd runs (RFC
//     8259 §4 leaves the choice to each parser; RFC 7493, I-JSON, forbids
//     the duplicate). It is refused, by its path.
//   - A field name in another case ("Target"): encoding/json matches names
//     case-insensitively, so {"target":"1010","Target":"1020"} was the
//     same duplicate by another name, and a name openapi.yaml does not
//     declare was taken. It is an unknown field, named with the one meant.
//   - Text that is not UTF-8 (RFC 8259 §8.1), or an escaped lone surrogate
//     ("\ud800"): encoding/json replaces it with U+FFFD, so a metadata
//     value was stored other than sent. The body is malformed.
//
// t is the Go type the body decodes into: an object of a struct type has
// the struct's fields, by exact name; one of a map type any names; each
// name once. Findings are returned by JSON path, as walkFields names
// fields (nil when there are none); a body that is not UTF-8 is a problem.
func checkNames(data []byte, t reflect.Type) (map[string]string, *Problem) {
	dec := decoders.Get().(*jsontext.Decoder)
	dec.Reset(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true))
	s := nameScan{dec: dec}
	err := s.value(t)
	dec.Reset(emptyInput) // let go of data
	decoders.Put(dec)
	if err != nil {
		p := probMalformed
		var syntax *jsontext.SyntacticError
		if errors.As(err, &syntax) {
			p.Detail = fmt.Sprintf("invalid JSON at byte %d: %v (send UTF-8 text, and escape whole characters only)", syntax.ByteOffset, syntax.Err)
		} else {
			p.Detail = "the body could not be decoded: " + err.Error()
		}
		return nil, &p
	}
	return s.bad, nil
}

// decoders are checkNames' token readers, kept between requests: a
// decoder's state is most of the check's allocations.
var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(emptyInput) }}

// emptyInput is what a decoder in the pool reads: nothing, and never read.
var emptyInput = bytes.NewReader(nil)

// nameScan is one checkNames: a reader of tokens, the path to the value
// being read, and what it found.
type nameScan struct {
	dec  *jsontext.Decoder
	path []string // names, and "[i]" for array elements
	bad  map[string]string
}

// found records detail at the current path, written as walkFields writes
// a field's path ("call.user", "items[2].name").
func (s *nameScan) found(detail string) {
	if s.bad == nil {
		s.bad = map[string]string{}
	}
	var b strings.Builder
	for i, seg := range s.path {
		if i > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	s.bad[b.String()] = detail
}

// value reads one JSON value, which t describes (nil: any).
func (s *nameScan) value(t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshaler) {
		// It reads its own names; each of them once still.
		t = nil
	}
	switch s.dec.PeekKind() {
	case '{':
		if _, err := s.dec.ReadToken(); err != nil {
			return err
		}
		var fields *structFields
		if t != nil && t.Kind() == reflect.Struct {
			fields = fieldsOf(t)
		}
		seen := map[string]bool{}
		for s.dec.PeekKind() != '}' {
			tok, err := s.dec.ReadToken()
			if err != nil {
				return err
			}
			name := tok.String()
			s.path = append(s.path, name)
			var elem reflect.Type
			switch {
			case seen[name]:
				s.found("appears more than once in its object; send each field once")
			case fields != nil:
				var ok bool
				if elem, ok = fields.exact[name]; !ok {
					if meant, ok := fields.folded[strings.ToLower(name)]; ok {
						s.found("is not a known field: field names are case-sensitive; did you mean " + strconv.Quote(meant) + "?")
					}
				}
			case t != nil && t.Kind() == reflect.Map:
				elem = t.Elem()
			}
			seen[name] = true
			err = s.value(elem)
			s.path = s.path[:len(s.path)-1]
			if err != nil {
				return err
			}
		}
		_, err := s.dec.ReadToken()
		return err
	case '[':
		if _, err := s.dec.ReadToken(); err != nil {
			return err
		}
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; s.dec.PeekKind() != ']'; i++ {
			s.path = append(s.path, "["+strconv.Itoa(i)+"]")
			err := s.value(elem)
			s.path = s.path[:len(s.path)-1]
			if err != nil {
				return err
			}
		}
		_, err := s.dec.ReadToken()
		return err
	default:
		// A string's UTF-8 is checked as it is read; a malformed token of
		// any kind (PeekKind's 0) fails here too.
		_, err := s.dec.ReadToken()
		return err
	}
}

// structFields are a struct type's JSON fields.
type structFields struct {
	exact  map[string]reflect.Type // by JSON name
	folded map[string]string       // JSON name by its lower case
}

// fieldCache holds fieldsOf's answers: a request's types are few, and
// every create reads them.
var fieldCache sync.Map // reflect.Type → *structFields

// fieldsOf lists t's JSON fields as encoding/json decodes them: exported,
// named by their tag (or the Go name), "-" left out.
func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{exact: map[string]reflect.Type{}, folded: map[string]string{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f.exact[name] = sf.Type
		f.folded[strings.ToLower(name)] = name
	}
	fieldCache.Store(t, f)
	return f
}
