// Package simjson words the simulators' refusals of a control body in the
// body's own terms rather than Go's: a field by its JSON name, the JSON a
// field takes, the values it accepts. nssim and bwsim both answer their
// control surfaces with it, so that a refused guess, knob or value reads
// the same on either.
package simjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// FieldName is the JSON name of T's field named field, or field when T
// has none of that name.
func FieldName[T any](field string) string {
	f, ok := reflect.TypeFor[T]().FieldByName(field)
	if !ok {
		return field
	}
	tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if tag == "" {
		return field
	}
	return tag
}

// OrList renders values as `"a", "b" or "c"`.
func OrList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// TypeError words err, from decoding a control body, when it is a value of
// the wrong JSON type for a named field: encoding/json names the Go struct
// and type ("Go struct field Guesses.not_ringing_status of type int"),
// this says "not_ringing_status is a whole number, not a JSON string". ok
// is false for any other error.
func TypeError(err error) (msg string, ok bool) {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field == "" {
		return "", false
	}
	return fmt.Sprintf("%s is a %s, not a JSON %s", te.Field, kind(te.Type), te.Value), true
}

// kind names the JSON a Go type decodes from.
func kind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "list"
	}
	return "object"
}
