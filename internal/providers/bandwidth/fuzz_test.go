package bandwidth

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FuzzDecodeError: any error body decodes without panicking into text that
// is safe to keep in records and logs.
func FuzzDecodeError(f *testing.F) {
	f.Add(404, []byte("{\"category\":\"not-found\",\"code\":\"call-not-found\",\"message\":\"The call `c-1` could not be found\",\"details\":[{\"name\":\"requestPath\",\"value\":\"users/u/calls/c-1\"}]}"))
	f.Add(429, []byte(`{"category":"too-many-requests","code":"rate-limit-reached","details":[{"name":"rateLimitResetTime","value":"1479308598680"}]}`))
	f.Add(403, []byte(`{"category":"limit","code":"call-rate-limit","message":"You can create 1 calls per 1 seconds, calculated as the average over 10 seconds. Your rate is: 1.1","details":[]}`))
	f.Add(400, []byte(`{"code":400,"message":null,"details":{"name":1}}`))
	f.Add(502, []byte("<html>Bad gateway</html>"))
	f.Add(500, []byte("\xff\xfe\x00"))
	f.Add(401, []byte(""))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := decodeError(status, body)
		if e.Status != status {
			t.Fatalf("status %d became %d", status, e.Status)
		}
		for name, s := range map[string]string{"category": e.Category, "code": e.Code, "message": e.Message} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s is not UTF-8: %q", name, s)
			}
			if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) }) {
				t.Fatalf("%s has control characters: %q", name, s)
			}
			if utf8.RuneCountInString(s) > maxMessage+1 {
				t.Fatalf("%s is %d runes long", name, utf8.RuneCountInString(s))
			}
		}
		_ = e.Error()
		_ = kindOf(e)
	})
}

// FuzzLocationID: any Location yields an id that is a single, plain path
// segment, or an error.
func FuzzLocationID(f *testing.F) {
	for _, s := range []string{
		"https://api.catapult.inetwork.com/v1/users/u-x/calls/c-zan4g74pprsq",
		"/v1/users/{userId}/calls/{callId}",
		"/v1/users/u/bridges/brg-65dhjwrmbasiei/",
		"http://localhost/path/transferedId",
		"", "/", "..", "/calls/%2F", "c-1?x#y", "http://[::1]:80/a/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		id, err := locationID(loc)
		if err != nil {
			if id != "" {
				t.Fatalf("error with id %q", id)
			}
			return
		}
		if !idRE.MatchString(id) || strings.ContainsAny(id, "/?#% ") || id == "." || id == ".." {
			t.Fatalf("locationID(%q) = %q", loc, id)
		}
	})
}
