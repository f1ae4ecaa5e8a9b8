package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// CallbackSigner makes and checks the unguessable tokens in provider
// callback URLs: an HMAC-SHA256, under a secret every replica shares, of
// what the callback is about. A token names its tenant in clear (the
// tenant's provider account receives the event) and binds it: a token for
// one tenant's transfer is no token for another's, nor for another
// transfer.
//
// A signer may also accept tokens made under other secrets, which it never
// makes: a rotation of the secret keeps the tokens already in providers'
// hands (a Bandwidth leg's callbackUrl, a NetSapiens subscription's
// post-url) good, and lets replicas that sign with the old secret and
// replicas that sign with the new one know each other's tokens meanwhile.
type CallbackSigner struct {
	secret   []byte
	accepted [][]byte
}

// MinCallbackSecret is the shortest secret accepted, in bytes.
const MinCallbackSecret = 32

// NewCallbackSigner returns a signer under secret that also accepts the
// tokens of the accepted secrets; each is at least MinCallbackSecret
// bytes, and none is the signing secret.
func NewCallbackSigner(secret []byte, accepted ...[]byte) (*CallbackSigner, error) {
	if len(secret) < MinCallbackSecret {
		return nil, errors.New("the callback secret must be at least 32 bytes")
	}
	s := &CallbackSigner{secret: bytes.Clone(secret)}
	for _, a := range accepted {
		switch {
		case len(a) < MinCallbackSecret:
			return nil, errors.New("an accepted callback secret must be at least 32 bytes")
		case bytes.Equal(a, secret):
			return nil, errors.New("an accepted callback secret must not be the signing one")
		}
		s.accepted = append(s.accepted, bytes.Clone(a))
	}
	return s, nil
}

// Purposes of tokens; each is a separate HMAC domain.
const (
	// TokenTransfer authenticates a provider's events about one transfer
	// (Bandwidth call events).
	TokenTransfer = "transfer"
	// TokenSubscription authenticates the events of one provider event
	// subscription (NetSapiens).
	TokenSubscription = "netsapiens-subscription"
)

// ID names the secret without telling anything of it: the first 12
// characters of its HMAC in a domain of its own, the same on every replica
// that shares the secret and different, but for a chance of one in 2^72,
// on one that does not. Operators compare it across replicas
// (transferd_config_info); it authenticates nothing.
func (s *CallbackSigner) ID() string { return secretID(s.secret) }

// AcceptedIDs are the IDs of the accepted secrets, in their order.
func (s *CallbackSigner) AcceptedIDs() []string {
	ids := make([]string, len(s.accepted))
	for i, a := range s.accepted {
		ids[i] = secretID(a)
	}
	return ids
}

func secretID(secret []byte) string { return mac(secret, "secret-id", "", "")[:12] }

// Token returns "<tenant>.<mac>" for id under purpose, made with the
// signing secret.
func (s *CallbackSigner) Token(purpose, tenant, id string) string {
	return tenant + "." + mac(s.secret, purpose, tenant, id)
}

// AcceptedTokens returns the tokens the accepted secrets would have made
// for id under purpose, in their order: what another replica, or this
// one before a rotation, may have put in a URL a provider holds.
func (s *CallbackSigner) AcceptedTokens(purpose, tenant, id string) []string {
	tokens := make([]string, len(s.accepted))
	for i, a := range s.accepted {
		tokens[i] = tenant + "." + mac(a, purpose, tenant, id)
	}
	return tokens
}

// Verify checks token for id under purpose, in constant time for each
// secret, and returns the tenant it names. A token of the signing secret
// or of an accepted one is good.
func (s *CallbackSigner) Verify(purpose, token, id string) (tenant string, ok bool) {
	tenant, got, found := strings.Cut(token, ".")
	if !found || !NameRE.MatchString(tenant) {
		return "", false
	}
	ok = hmac.Equal([]byte(got), []byte(mac(s.secret, purpose, tenant, id)))
	for _, a := range s.accepted {
		ok = hmac.Equal([]byte(got), []byte(mac(a, purpose, tenant, id))) || ok
	}
	if !ok {
		return "", false
	}
	return tenant, true
}

func mac(secret []byte, purpose, tenant, id string) string {
	h := hmac.New(sha256.New, secret)
	// Lengths are implied: tenant names hold no ':', and purpose is fixed.
	h.Write([]byte(purpose + ":" + tenant + ":" + id))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
