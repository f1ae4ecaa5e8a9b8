package netsapiens

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/transferd/transferd/internal/orchestrator"
)

func TestActiveCallDecodingIsTolerant(t *testing.T) {
	cases := map[string]string{
		"guide (numeric user, call-term-info)": `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":1000,"call-term-domain":"TEST","call-orig-info":"active","call-term-info":"active"}`,
		"spec (term-orig-info typo)":           `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":"1000","call-orig-info":"active","term-orig-info":"active"}`,
		"legacy event names":                   `{"hostname":"core1","sessionId":1010101010101010101,"orig_callid":"abc@10.0.0.1","term_callid":"123-1a2d","term_user":"1000","orig_call_info":"active","term_call_info":"ACTIVE","remove":"no"}`,
		"user with domain, odd extra fields":   `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":"1000@TEST","call-orig-info":"active","call-term-info":"active","extra":{"nested":[1,2]}}`,
	}
	for name, js := range cases {
		t.Run(name, func(t *testing.T) {
			var ac activeCall
			if err := json.Unmarshal([]byte(js), &ac); err != nil {
				t.Fatal(err)
			}
			if ac.Server != "core1" || ac.SessionID != "1010101010101010101" || ac.OrigCallID != "abc@10.0.0.1" ||
				ac.TermCallID != "123-1a2d" || !sameUser(ac.TermUser, "1000") || ac.OrigInfo != "active" || ac.TermInfo != "active" {
				t.Errorf("decoded %+v", ac)
			}
		})
	}
}

// rowCases are listings decodeRows must read as encoding/json read them
// before it (refRows, the replaced code).
var rowCases = map[string]string{
	"simulator listing": `[{"core-server":"core1-sim.netsapiens.test","call-session-id":"20261130024612000002","call-orig-call-id":"0_3051823727@192.0.2.10",
		"call-orig-match-uri":"sip:*@192.0.2.10","call-orig-user":"","call-orig-domain":"","call-orig-uri":"sip:15555555555@192.0.2.10",
		"call-orig-name":"15555555555","caller-id-number":"15555555555","call-dialed-number":"11111111111","call-by-action":"",
		"call-by-user":"","call-by-domain":"","call-by-call-id":"","call-term-call-id":"20261130024613000004-6a84ad451eceaf340fdfd429ddaf3943",
		"call-term-user":"1010","call-term-domain":"TEST","call-term-uri":"sip:1010@TEST","call-start-datetime":"2026-11-30 02:46:12",
		"call-answer-datetime":"2026-11-30 02:46:12","call-orig-info":"active","term-orig-info":"active","call-term-info":"active","call-audio-codec":"PCMU"},
		{"core-server":"core1","call-session-id":"2","call-orig-call-id":"a","call-term-call-id":"b","call-term-user":1000,"call-orig-info":"Held","call-term-info":"active"}]`,
	"PSTN leg, legacy names":   `[{"orig_uri":"tel:+15555555555","term_uri":"<sips:+18587645200@srv.lcr.thinq.com;user=phone>","dnis":18587645200,"term_user":"","term_domain":"*"}]`,
	"URIs of every form":       `[{"call-orig-uri":"1000@10.0.0.1:5060","call-term-uri":"SIP:1010@TEST","call-dialed-number":" 1010 "},{"call-orig-uri":"sip:@x","call-term-uri":"<>"}]`,
	"empty":                    `[]`,
	"null":                     `null`,
	"null row":                 `[null,{"core-server":"c"}]`,
	"numbers":                  `[{"call-session-id":1010101010101010101,"call-term-user":-1.5e3,"call-orig-user":0}]`,
	"nulls clear":              `[{"core-server":"c","core-server":null,"hostname":"h"}]`,
	"last name wins":           `[{"call-term-user":"1","call-term-user":"2"}]`,
	"names in any case":        `[{"Core-Server":"c","CALL-SESSION-ID":"s","SessionId":"e","Term_User":"1000"}]`,
	"escapes":                  `[{"core\u002dserver":"c\u00e9\n","call-orig-call-id":"a\"b\\c","call-term-user":"\u0031000"}]`,
	"spaces":                   ` [ { "core-server" : "  c  " , "call-term-user" : " " , "term_user" : "7" } ] `,
	"nested unknowns":          `[{"extra":{"nested":[1,{"core-server":"x"}],"n":null},"core-server":"c","z":[[],{}]}]`,
	"bad type dropped":         `[{"core-server":{"a":1},"hostname":"h","call-session-id":true,"session_id":"s","call-term-user":[1]}]`,
	"bad type after good":      `[{"call-term-user":"1000","call-term-user":false,"term_user":"9"}]`,
	"good after bad":           `[{"call-term-user":false,"call-term-user":"1000"}]`,
	"utf-8":                    `[{"call-orig-user":"José","core-server":"ç"}]`,
	"infos lower case":         `[{"call-orig-info":"ACTIVE","term_call_info":"Alerting"}]`,
	"object, not a listing":    `{"code":404,"message":"No Route Found"}`,
	"string row":               `["x"]`,
	"number row":               `[1]`,
	"trailing data":            `[] []`,
	"truncated":                `[{"core-server":"c"`,
	"number too big for float": `[{"call-term-user":1e400}]`,
}

func TestRowDecodingMatchesEncodingJSON(t *testing.T) {
	for name, js := range rowCases {
		t.Run(name, func(t *testing.T) {
			checkRowsLikeEncodingJSON(t, []byte(js))
		})
	}
}

func checkRowsLikeEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	want, werr := refRows(data)
	got, gerr := decodeRows(data)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s\nencoding/json: %v\ndecodeRows: %v", data, werr, gerr)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s\nencoding/json: %+v\ndecodeRows:    %+v", data, want, got)
	}
	for _, ac := range got {
		// Whatever decoded must be usable without panics.
		_ = ac.hasCall("x")
		_ = sameUser(ac.TermUser, "1000")
	}
}

// FuzzRowDecoding compares decodeRows with encoding/json on any input
// but two that encoding/json itself reads inconsistently: names that
// differ only in case in an object that also has a field of the wrong
// type (its second pass sorts the names), and non-ASCII names (it folds
// the Kelvin sign into k).
func FuzzRowDecoding(f *testing.F) {
	for _, js := range rowCases {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range data {
			if c >= utf8.RuneSelf {
				return
			}
		}
		if foldedDuplicates(data) {
			return
		}
		checkRowsLikeEncodingJSON(t, data)
	})
}

// foldedDuplicates reports whether an object of data has two names that
// are equal but for case.
func foldedDuplicates(data []byte) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	var stack []map[string]string
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		switch tok.Kind() {
		case '{':
			stack = append(stack, map[string]string{})
			continue
		case '}':
			stack = stack[:len(stack)-1]
			continue
		}
		// A string just read is a name when its object has an odd count.
		kind, length := dec.StackIndex(dec.StackDepth())
		if n := len(stack); n > 0 && tok.Kind() == '"' && kind == '{' && length%2 == 1 {
			name := tok.String()
			key := strings.ToLower(name)
			if seen, ok := stack[n-1][key]; ok && seen != name {
				return true
			}
			stack[n-1][key] = name
		}
	}
}

// A view indexes each id once; an id that several rows carry (a PBX that
// made two consult legs of one call-id) must still yield every row, and
// observing through the index must judge as a scan of the whole listing.
func TestViewObservesLikeTheWholeListing(t *testing.T) {
	tr := &orchestrator.Transfer{ID: "tr1"}
	tr.Legs.Caller.CallID = "caller-1"
	tr.Legs.Caller.SessionID = "s-1"
	tr.Legs.Agent.CallID = "agent-1"
	consult := ConsultCallID(tr.ID)
	calls := []activeCall{
		{SessionID: "s-0", OrigCallID: "other-a", TermCallID: "other-b", OrigInfo: "active", TermInfo: "active"},
		{SessionID: "s-1", OrigCallID: "caller-1", TermCallID: "agent-1", OrigInfo: "held", TermInfo: "active"},
		{SessionID: "s-2", OrigCallID: consult, TermCallID: "t-1", OrigInfo: "active", TermInfo: "alerting"},
		{SessionID: "s-3", OrigCallID: "other-c", TermCallID: "other-d", OrigInfo: "active", TermInfo: "active"},
		{SessionID: "s-4", OrigCallID: consult, TermCallID: "t-2", OrigInfo: "active", TermInfo: "active"},
	}
	got, err := newView(calls).Observe(tr)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := observe(tr, calls); got != want {
		t.Errorf("through the index %+v, scanning the listing %+v", got, want)
	}
	if got.ConsultLegs != 2 || got.Caller != orchestrator.CallerHeld {
		t.Errorf("observation %+v: want both consult legs and the caller held", got)
	}
}

// BenchmarkListingDecode reads a listing of the simulator's rows, 3 and
// 100 calls long, with decodeRows and with the encoding/json decoding it
// replaced.
func BenchmarkListingDecode(b *testing.B) {
	row := rowCases["simulator listing"]
	row = row[1 : strings.Index(row, "},")+1]
	for _, n := range []int{3, 100} {
		data := []byte("[" + strings.Repeat(row+",", n-1) + row + "]")
		for _, d := range []struct {
			name   string
			decode func([]byte) ([]activeCall, error)
		}{{"decodeRows", decodeRows}, {"encoding-json", refRows}} {
			b.Run(fmt.Sprintf("%s/%d", d.name, n), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if calls, err := d.decode(data); err != nil || len(calls) != n {
						b.Fatal(len(calls), err)
					}
				}
			})
		}
	}
}
