package api_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
)

// The two secrets of a rotation of the callback secret.
var (
	oldSecret = []byte("the-callback-secret-before-the-rotation-01")
	newSecret = []byte("the-callback-secret-after-the-rotation-002")
)

func mustSigner(t *testing.T, secret []byte, accepted ...[]byte) *api.CallbackSigner {
	t.Helper()
	s, err := api.NewCallbackSigner(secret, accepted...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A rotation of the callback secret: replicas first accept the new secret
// while signing with the old, then sign with the new and accept the old,
// then drop it. At every step each replica knows the tokens the others
// make, and those already in providers' hands stay good until the old
// secret is dropped. A signer never makes a token with an accepted secret.
func TestCallbackSignerAcceptsTheOtherSecretOfARotation(t *testing.T) {
	const tenant, id = "acme", "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	before := mustSigner(t, oldSecret)
	accepting := mustSigner(t, oldSecret, newSecret) // step 1
	rotated := mustSigner(t, newSecret, oldSecret)   // step 2
	after := mustSigner(t, newSecret)                // step 3

	oldToken, newToken := before.Token(api.TokenTransfer, tenant, id), after.Token(api.TokenTransfer, tenant, id)
	if oldToken == newToken {
		t.Fatal("two secrets made the same token")
	}
	if got := accepting.Token(api.TokenTransfer, tenant, id); got != oldToken {
		t.Errorf("step 1 signs %q, want the old secret's %q", got, oldToken)
	}
	if got := rotated.Token(api.TokenTransfer, tenant, id); got != newToken {
		t.Errorf("step 2 signs %q, want the new secret's %q", got, newToken)
	}
	for _, c := range []struct {
		name  string
		s     *api.CallbackSigner
		token string
		want  bool
	}{
		{"before, the old token", before, oldToken, true},
		{"before, the new token", before, newToken, false},
		{"step 1, the old token", accepting, oldToken, true},
		{"step 1, the new token", accepting, newToken, true},
		{"step 2, the old token", rotated, oldToken, true},
		{"step 2, the new token", rotated, newToken, true},
		{"after, the old token", after, oldToken, false},
		{"after, the new token", after, newToken, true},
	} {
		got, ok := c.s.Verify(api.TokenTransfer, c.token, id)
		if ok != c.want || (ok && got != tenant) {
			t.Errorf("%s: Verify = %q, %t; want %t", c.name, got, ok, c.want)
		}
		// Bound to purpose, transfer and tenant, whichever secret made it.
		if _, ok := c.s.Verify(api.TokenSubscription, c.token, id); ok {
			t.Errorf("%s: good for another purpose", c.name)
		}
		if _, ok := c.s.Verify(api.TokenTransfer, c.token, id+"X"); ok {
			t.Errorf("%s: good for another transfer", c.name)
		}
		_, mac, _ := strings.Cut(c.token, ".")
		if _, ok := c.s.Verify(api.TokenTransfer, "other."+mac, id); ok {
			t.Errorf("%s: good for another tenant", c.name)
		}
	}
	if got := rotated.AcceptedTokens(api.TokenTransfer, tenant, id); !slices.Equal(got, []string{oldToken}) {
		t.Errorf("AcceptedTokens = %q, want the old secret's [%q]", got, oldToken)
	}
	if got := after.AcceptedTokens(api.TokenTransfer, tenant, id); len(got) != 0 {
		t.Errorf("AcceptedTokens without an accepted secret = %q", got)
	}
	if got, want := rotated.AcceptedIDs(), []string{before.ID()}; !slices.Equal(got, want) {
		t.Errorf("AcceptedIDs = %q, want %q", got, want)
	}
	if rotated.ID() != after.ID() {
		t.Error("the signing secret's ID depends on the accepted one")
	}
}

func TestCallbackSignerRefusesABadAcceptedSecret(t *testing.T) {
	for name, accepted := range map[string][]byte{
		"short":           []byte("too-short"),
		"the signing one": newSecret,
	} {
		if _, err := api.NewCallbackSigner(newSecret, accepted); err == nil {
			t.Errorf("an accepted secret %s: no error", name)
		} else if strings.Contains(err.Error(), string(accepted)) {
			t.Errorf("the error names the secret: %v", err)
		}
	}
}

// The callback route of a replica in the middle of a rotation takes a
// provider's event under either secret, and refuses one under a third.
func TestCallbackRouteDuringARotation(t *testing.T) {
	srv := newEnvSigning(t, zerolog.Nop(), mustSigner(t, newSecret, oldSecret)).srv
	const id = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	third := mustSigner(t, []byte("a-callback-secret-no-replica-has-000000000"))
	for _, c := range []struct {
		name  string
		token string
		want  int
	}{
		{"the new secret's", mustSigner(t, newSecret).Token(api.TokenTransfer, "default", id), http.StatusNoContent},
		{"the old secret's", mustSigner(t, oldSecret).Token(api.TokenTransfer, "default", id), http.StatusNoContent},
		{"a third secret's", third.Token(api.TokenTransfer, "default", id), http.StatusNotFound},
	} {
		res, err := srv.Client().Post(srv.URL+"/callbacks/netsapiens/"+id+"/"+c.token, "application/json",
			strings.NewReader(`{"eventType":"hangup","callId":"c-1"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("a callback with %s token: %d, want %d", c.name, res.StatusCode, c.want)
		}
	}
}
