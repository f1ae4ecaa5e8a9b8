package postgres

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// jsonbSafe replaces real \u0000 escapes only, and the result decodes to
// the input with U+0000 turned into U+FFFD.
func TestJSONBSafe(t *testing.T) {
	for _, in := range []string{
		"", "plain", "a\x00b", "\x00", `\u0000`, "\\\x00", `\\u0000`, "\\\\\x00\\", "x\x00y\x00z", `"quoted" \n`,
	} {
		b, err := json.Marshal(map[string]string{"k": in})
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]string
		if err := json.Unmarshal(jsonbSafe(b), &out); err != nil {
			t.Fatalf("%q: %s does not decode: %v", in, jsonbSafe(b), err)
		}
		if want := strings.ReplaceAll(in, "\x00", "\uFFFD"); out["k"] != want {
			t.Errorf("%q came back %q, want %q", in, out["k"], want)
		}
	}
}

func TestPasswords(t *testing.T) {
	for _, c := range []struct {
		conn string
		want []string
	}{
		{"postgres://u:p%40ss@h/db", []string{"p%40ss", "p@ss"}},
		{"postgres://u@h/db?password=x%26y&sslmode=disable", []string{"x%26y", "x&y"}},
		{"host=h user=u password='it\\'s' dbname=d", []string{"'it\\'s'", "it's"}},
		{"host=h password=plain", []string{"plain"}},
		{"postgres://u@h/db", nil},
	} {
		got := passwords(c.conn)
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("passwords(%q) = %q, want %q", c.conn, got, c.want)
		}
	}
}

// An error quoting the password is replaced by a redacted copy.
func TestFailRedacts(t *testing.T) {
	s := &Store{secrets: passwords("postgres://u:hunter2@h/db")}
	err := s.fail("get tr_X", errors.New("cannot connect to postgres://u:hunter2@h/db"))
	if strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "postgres: get tr_X: ") {
		t.Errorf("fail = %v", err)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("the redacted error still wraps the original")
	}
	cause := errors.New("plain")
	if err := s.fail("get", cause); !errors.Is(err, cause) {
		t.Errorf("an error without the secret lost its chain: %v", err)
	}
}
