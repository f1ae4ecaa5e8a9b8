package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Scope is what a key may do: ScopeRead reads (GET and HEAD of every /v1
// route), ScopeWrite does everything.
type Scope string

const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
)

// KeyHash is the SHA-256 of an API key. Only hashes are configured and
// kept, so that a leaked configuration leaks no key.
type KeyHash [sha256.Size]byte

// HashKey returns the hash of a presented key.
func HashKey(key string) KeyHash { return sha256.Sum256([]byte(key)) }

// ParseKeyHash reads "sha256:<64 hex digits>".
func ParseKeyHash(s string) (KeyHash, error) {
	var h KeyHash
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return h, errors.New(`must be "sha256:" followed by 64 hex digits`)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != len(h) {
		return h, errors.New(`must be "sha256:" followed by 64 hex digits`)
	}
	copy(h[:], b)
	return h, nil
}

// Key is one configured API key: its hash, the name logs and metrics use
// instead of it, its tenant and its scope.
type Key struct {
	Name   string
	Tenant string
	Scope  Scope
	Hash   KeyHash
}

// NameRE is what key and tenant names look like: they appear in logs, in
// metric-free audit lines and (tenants) in callback URLs.
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// KeySet is an immutable set of keys.
type KeySet struct{ keys []Key }

// NewKeySet checks names, tenants and scopes and refuses a hash given
// twice (two names for one key would make logs lie), and a name given
// twice in a tenant (one name for two keys would too).
func NewKeySet(keys []Key) (*KeySet, error) {
	seen := map[KeyHash]string{}
	named := map[[2]string]bool{}
	for _, k := range keys {
		if named[[2]string{k.Tenant, k.Name}] {
			return nil, fmt.Errorf("key name %s is given twice in tenant %s", k.Name, k.Tenant)
		}
		named[[2]string{k.Tenant, k.Name}] = true
		switch {
		case !NameRE.MatchString(k.Name):
			return nil, fmt.Errorf("key name %q: must be lower-case letters, digits, '-' or '_' (at most 63)", k.Name)
		case !NameRE.MatchString(k.Tenant):
			return nil, fmt.Errorf("key %s: tenant %q: must be lower-case letters, digits, '-' or '_' (at most 63)", k.Name, k.Tenant)
		case k.Scope != ScopeRead && k.Scope != ScopeWrite:
			return nil, fmt.Errorf("key %s: scope must be read or write", k.Name)
		}
		if other, dup := seen[k.Hash]; dup {
			return nil, fmt.Errorf("keys %s and %s are the same key", other, k.Name)
		}
		seen[k.Hash] = k.Name
	}
	return &KeySet{keys: append([]Key(nil), keys...)}, nil
}

// ParseKeyList reads TRANSFERD_API_KEYS: comma-separated keys, each
// "sha256:<hex>" or the key itself, all with write scope for tenant.
// Keys are named key-1, key-2, … in the order given.
func ParseKeyList(list, tenant string) (*KeySet, error) {
	var keys []Key
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k := Key{Name: fmt.Sprintf("key-%d", i+1), Tenant: tenant, Scope: ScopeWrite}
		if strings.HasPrefix(item, "sha256:") {
			h, err := ParseKeyHash(item)
			if err != nil {
				// The item is not quoted: it might be a key with a typo.
				return nil, fmt.Errorf("item %d %v", i+1, err)
			}
			k.Hash = h
		} else {
			if len(item) < 16 {
				return nil, fmt.Errorf("item %d: a key must be at least 16 characters (or sha256:<hex> of one)", i+1)
			}
			k.Hash = HashKey(item)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key given")
	}
	return NewKeySet(keys)
}

// Len is the number of keys.
func (s *KeySet) Len() int { return len(s.keys) }

// Authenticate finds the key presented. Every configured hash is compared,
// in constant time, so that the time taken tells nothing about which
// comparison failed.
func (s *KeySet) Authenticate(presented string) (Key, bool) {
	h := HashKey(presented)
	var found Key
	ok := 0
	for _, k := range s.keys {
		if subtle.ConstantTimeCompare(h[:], k.Hash[:]) == 1 {
			found, ok = k, 1
		}
	}
	return found, ok == 1
}

// Authenticator finds the key a request presents; a KeySet and the tenants
// registry (which reloads) implement it.
type Authenticator interface {
	Authenticate(presented string) (Key, bool)
}

// Principal is who a request acts for.
type Principal struct {
	Tenant  string
	KeyName string
	Scope   Scope
}

type principalKey struct{}

// reauthKey holds, in a request's context, a check that the key which
// authenticated the request still does, for the same tenant.
type reauthKey struct{}

// stillAuthorized reports whether the key that authenticated ctx's
// request still authenticates, for the same tenant (true without keys).
// A response that outlives its request's start (an event stream, a long
// poll) asks before it sends what the key reads: a tenants-file reload
// may have revoked the key meanwhile, the answer to a leaked one.
func stillAuthorized(ctx context.Context) bool {
	_, ok := scopeNow(ctx)
	return ok
}

// mayStillWrite reports whether the key that authenticated ctx's request
// still authenticates, for the same tenant, with write scope.
func mayStillWrite(ctx context.Context) bool {
	scope, ok := scopeNow(ctx)
	return ok && scope == ScopeWrite
}

// scopeNow returns the scope the key that authenticated ctx's request
// has now, and whether it still authenticates for the same tenant
// (ScopeWrite and true without keys). A reload may have left the key to
// its tenant but made it a reader's: a write that waited (a repeat of an
// Idempotency-Key) must ask this before it acts.
func scopeNow(ctx context.Context) (Scope, bool) {
	if f, ok := ctx.Value(reauthKey{}).(func() (Scope, bool)); ok {
		return f()
	}
	return ScopeWrite, true
}

// PrincipalOf returns the principal authenticated for ctx; without
// authentication (an open demo API) it is the default tenant's
// "anonymous" writer.
func PrincipalOf(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return Principal{Tenant: orchestrator.DefaultTenant, KeyName: "anonymous", Scope: ScopeWrite}
}

// authMetrics counts refused authentications by reason, never by key.
type authMetrics struct {
	refused *prometheus.CounterVec
}

// Reasons of refused authentications.
const (
	refusedMissing   = "missing"   // no Authorization header
	refusedMalformed = "malformed" // not "Bearer <token>"
	refusedUnknown   = "unknown"   // no such key
	refusedScope     = "scope"     // a read key asked to write
	refusedCallback  = "callback_token"
)

func newAuthMetrics(reg prometheus.Registerer) *authMetrics {
	m := &authMetrics{refused: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "transferd_http_auth_refused_total",
		Help: "Requests refused authentication, by reason (missing, malformed, unknown, scope, callback_token).",
	}, []string{"reason"})}
	for _, r := range []string{refusedMissing, refusedMalformed, refusedUnknown, refusedScope, refusedCallback} {
		m.refused.WithLabelValues(r)
	}
	return m
}

// authenticate guards every /v1 route: the key's tenant scopes everything
// downstream (orchestrator.WithTenant), its name goes on every log line of
// the request, and methods other than GET and HEAD need write scope. With
// no authenticator the API is open and acts for the default tenant.
func authenticate(keys Authenticator, m *authMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := PrincipalOf(r.Context())
			var token string
			if keys != nil {
				hs := r.Header.Values("Authorization")
				var h, scheme string
				if len(hs) > 0 {
					h = hs[0]
				}
				scheme, token, _ = strings.Cut(h, " ")
				token = strings.TrimSpace(token)
				var reason string
				switch {
				case len(hs) > 1:
					// Two Authorization headers are one too many
					// (RFC 9110 §11.6.2 allows one credential), even if
					// the first is empty: a proxy that checked the other
					// would have let in a request transferd runs as
					// someone else.
					reason = refusedMalformed
				case h == "":
					reason = refusedMissing
				case !strings.EqualFold(scheme, "Bearer") || token == "":
					reason = refusedMalformed
				default:
					k, ok := keys.Authenticate(token)
					if !ok {
						reason = refusedUnknown
						break
					}
					p = Principal{Tenant: k.Tenant, KeyName: k.Name, Scope: k.Scope}
				}
				if reason != "" {
					m.refused.WithLabelValues(reason).Inc()
					zerolog.Ctx(r.Context()).Info().Str("reason", reason).Msg("authentication refused")
					detail := "send Authorization: Bearer <API key>"
					if len(hs) > 1 {
						detail = "send one Authorization header: Bearer <API key>"
					}
					if reason == refusedUnknown {
						detail = "the API key is not known"
					}
					writeUnauthorized(w, r, detail)
					return
				}
			}
			if slot, ok := r.Context().Value(accessPrincipalKey{}).(*Principal); ok {
				*slot = p
			}
			log := zerolog.Ctx(r.Context()).With().Str("tenant", p.Tenant).Str("key", p.KeyName).Logger()
			ctx := log.WithContext(r.Context())
			ctx = context.WithValue(ctx, principalKey{}, p)
			if keys != nil {
				tenant := p.Tenant
				ctx = context.WithValue(ctx, reauthKey{}, func() (Scope, bool) {
					k, ok := keys.Authenticate(token)
					return k.Scope, ok && k.Tenant == tenant
				})
			}
			ctx = orchestrator.WithTenant(ctx, p.Tenant)
			r = r.WithContext(ctx)
			if p.Scope != ScopeWrite && r.Method != http.MethodGet && r.Method != http.MethodHead {
				m.refused.WithLabelValues(refusedScope).Inc()
				log.Info().Str("reason", refusedScope).Msg("authentication refused")
				writeReadOnly(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// writeReadOnly answers 403 to a write with a key that may only read,
// with the challenge RFC 6750 asks for.
func writeReadOnly(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="transferd", error="insufficient_scope", scope="write"`)
	p := probForbidden
	p.Detail = "this key may only read; " + r.Method + " needs a key with write scope"
	writeProblem(w, r, p)
}

// writeUnauthorized answers 401 with the challenge RFC 6750 asks for.
func writeUnauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="transferd"`)
	p := probUnauthorized
	p.Detail = detail
	writeProblem(w, r, p)
}

// audit writes one line per accepted mutation: who (tenant, key), which
// request and which transfer.
func audit(r *http.Request, action, transferID string) {
	// The request's logger already carries request_id, tenant and key.
	zerolog.Ctx(r.Context()).Info().Str("audit", action).Str("transfer_id", transferID).Msg("accepted " + action)
}
