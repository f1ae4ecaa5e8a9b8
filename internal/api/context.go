package api

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Bounds of a transfer's client context: an id and a few labels, not a
// document store (every event and webhook repeats them).
const (
	maxExternalID    = 128
	maxMetadataKeys  = 16
	maxMetadataKey   = 40
	maxMetadataValue = 256
)

// metadataKeyRE is what a metadata key may look like.
var metadataKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// validContext checks external_id and metadata; problems by JSON path.
func validContext(externalID string, metadata map[string]string) map[string]string {
	bad := map[string]string{}
	if externalID != "" && (utf8.RuneCountInString(externalID) > maxExternalID || !printable(externalID)) {
		bad["external_id"] = fmt.Sprintf("must be at most %d printable characters", maxExternalID)
	}
	if len(metadata) > maxMetadataKeys {
		bad["metadata"] = fmt.Sprintf("may hold at most %d keys", maxMetadataKeys)
	}
	for k, v := range metadata {
		switch {
		case len(k) > maxMetadataKey || !metadataKeyRE.MatchString(k):
			bad["metadata."+k] = fmt.Sprintf("keys are 1 to %d letters, digits, '_', '.' or '-'", maxMetadataKey)
		case utf8.RuneCountInString(v) > maxMetadataValue || !printable(v):
			bad["metadata."+k] = fmt.Sprintf("values are at most %d printable characters", maxMetadataValue)
		}
	}
	return bad
}

// printable: valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// listFilter applies one of the list's context filters to f. earlier is
// a request of a Go client of an earlier release (sendsEvery), whose
// created_before at the zero time means no bound.
func listFilter(f *orchestrator.ListFilter, name, v string, earlier bool, bad map[string]string) {
	switch name {
	case "external_id":
		if utf8.RuneCountInString(v) > maxExternalID { // characters, as create counts them
			// No transfer can carry it: an empty page would hide the typo.
			bad[name] = fmt.Sprintf("must be at most %d characters", maxExternalID)
		}
		f.ExternalID = v
	case "domain":
		f.Domain = v
	case "user":
		f.User = v
	case "call_id":
		f.CallID = v
	case "target":
		if strings.ContainsAny(v, " \t") {
			// No target has a space (every provider refuses one at create): this is
			// ?target=+1555… unescaped, whose + reads as a space, and an empty page
			// would say there are no transfers to that number.
			bad[name] = "has a space, which no target has: a + in a query string reads as a space; write it %2B (target=%2B15555550222)"
		}
		f.Target = v
	case "created_after", "created_before":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			bad[name] = "must be an RFC 3339 date-time, such as 2026-01-02T15:04:05Z"
			if strings.Contains(v, " ") {
				bad[name] += "; a + in a query string reads as a space: write an offset such as +02:00 as %2B02:00"
			}
			return
		}
		if name == "created_after" {
			f.CreatedAfter = t
			return
		}
		if _, before := (orchestrator.ListFilter{CreatedBefore: t}).CreatedBounds(); before.IsZero() && !earlier {
			// The zero time, which the stores read as no bound: the list
			// would be every transfer, where "created before year 1" is
			// none. Earlier Go clients sent it for a bound left out, so
			// neither reading is safe to answer with.
			bad[name] = "is the zero time (0001-01-01T00:00:00Z, to the microsecond), before which nothing is created and which earlier Go clients sent for no bound: leave the parameter out to list without a bound"
			return
		}
		f.CreatedBefore = t
	}
}

// emptyParam is the complaint about a list's parameter sent with no value
// (?call_id=): read as no filter, a client's ?call_id=$ID with $ID unset
// would list every transfer of its tenant; read as "equal to empty", an
// empty page that says there are none. Either misleads: it is refused.
const emptyParam = "is empty: leave the parameter out to list without it"

// sendsEvery reports whether q carries every one of names, the
// parameters of a list that are not repeated: the signature of the Go
// client of earlier releases, which sent them all, those its caller left
// unset empty (and created_before at the zero time), meaning "no filter".
// Such a request is read as it always was, so that upgrading transferd
// does not break every list of the clients it already has; a request
// that leaves one out was written otherwise, and its empty value is
// refused (emptyParam). A hand-written client sends every parameter of a
// list only on purpose.
func sendsEvery(q url.Values, names ...string) bool {
	for _, n := range names {
		if _, ok := q[n]; !ok {
			return false
		}
	}
	return true
}

// listParams checks a list's query parameters: each is repeatable or one
// of others, given once unless it is repeatable, and not empty, except in
// a request of the Go client of earlier releases (sendsEvery of others),
// which it reports. What is wrong goes into bad, naming the parameter.
func listParams(q url.Values, bad map[string]string, repeatable string, others ...string) (earlier bool) {
	earlier = sendsEvery(q, others...)
	for name, vs := range q {
		switch {
		case name != repeatable && !slices.Contains(others, name):
			bad[name] = "is not a known query parameter"
		case slices.Contains(vs, "") && !earlier:
			bad[name] = emptyParam
		case len(vs) > 1 && name != repeatable:
			// Only the first would count: the rest would be ignored.
			bad[name] = "is given more than once"
		}
	}
	return earlier
}

// query parses the request's query string. url.URL.Query drops a pair it
// cannot unescape (?dry_run%=true), which would then be ignored, not
// refused: such a query string is a bad field of its own, "(query)". A
// parameter that is not text (storable) is refused by its name: no
// filter, cursor or id has such a value, and PostgreSQL refuses to be
// sent one (a 500 for the client's typo).
func query(r *http.Request, bad map[string]string) url.Values {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		bad["(query)"] = "is not a valid query string: " + err.Error()
	}
	for name, vs := range q {
		if !storable(name) || slices.ContainsFunc(vs, func(v string) bool { return !storable(v) }) {
			bad[name] = notText
		}
	}
	return q
}

// notText is the complaint about a value that is not storable.
const notText = "is not UTF-8 text, or holds the character U+0000"

// storable reports whether s is text that every store can hold: UTF-8
// without U+0000, both of which PostgreSQL refuses in any text it is
// sent, where SQLite and the memory store take them.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// maxPath bounds a /v1 path: the longest route with the longest id any
// release made (a delivery id, at most 64 characters) is under 100 bytes.
const maxPath = 256

// textPath answers 404 for a path that is not storable, or longer than
// maxPath: no transfer or delivery has such an id, and the path would
// reach the store all the same (a redelivery's id, the scope of an
// Idempotency-Key), which PostgreSQL answers with an error: a 500, or a
// 503 saying the key could not be recorded (the key's index takes at
// most 2704 bytes a row), to be retried for good.
func textPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := ""
		switch {
		case !storable(r.URL.Path):
			why = "the path " + notText
		case len(r.URL.Path) > maxPath:
			why = fmt.Sprintf("the path is longer than %d bytes", maxPath)
		}
		if why != "" {
			p := probNotFound
			p.Detail = "nothing has this id: " + why
			writeProblem(w, r, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}
