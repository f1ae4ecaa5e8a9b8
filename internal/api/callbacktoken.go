package api

import (
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
type CallbackSigner struct{ secret []byte }

// MinCallbackSecret is the shortest secret accepted, in bytes.
const MinCallbackSecret = 32

// NewCallbackSigner returns a signer under secret (at least
// MinCallbackSecret bytes).
func NewCallbackSigner(secret []byte) (*CallbackSigner, error) {
	if len(secret) < MinCallbackSecret {
		return nil, errors.New("the callback secret must be at least 32 bytes")
	}
	return &CallbackSigner{secret: append([]byte(nil), secret...)}, nil
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
func (s *CallbackSigner) ID() string { return s.mac("secret-id", "", "")[:12] }

// Token returns "<tenant>.<mac>" for id under purpose.
func (s *CallbackSigner) Token(purpose, tenant, id string) string {
	return tenant + "." + s.mac(purpose, tenant, id)
}

// Verify checks token for id under purpose in constant time and returns
// the tenant it names.
func (s *CallbackSigner) Verify(purpose, token, id string) (tenant string, ok bool) {
	tenant, mac, found := strings.Cut(token, ".")
	if !found || !NameRE.MatchString(tenant) {
		return "", false
	}
	want := s.mac(purpose, tenant, id)
	if !hmac.Equal([]byte(mac), []byte(want)) {
		return "", false
	}
	return tenant, true
}

func (s *CallbackSigner) mac(purpose, tenant, id string) string {
	h := hmac.New(sha256.New, s.secret)
	// Lengths are implied: tenant names hold no ':', and purpose is fixed.
	h.Write([]byte(purpose + ":" + tenant + ":" + id))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
