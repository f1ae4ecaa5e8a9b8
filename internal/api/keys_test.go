package api_test

import (
	"testing"

	"github.com/transferd/transferd/internal/api"
)

// Keys of the API tests: the default tenant's writer and reader, and a
// writer and a reader of another tenant.
const (
	writeKey      = "contract-write-key-0001"
	readKey       = "contract-read-key-00001"
	otherWriteKey = "other-tenant-write-key-1"
	otherReadKey  = "other-tenant-read-key-01"
	otherTenant   = "other"
)

func testKeys(t testing.TB) *api.KeySet {
	t.Helper()
	ks, err := api.NewKeySet([]api.Key{
		{Name: "crm", Tenant: "default", Scope: api.ScopeWrite, Hash: api.HashKey(writeKey)},
		{Name: "wallboard", Tenant: "default", Scope: api.ScopeRead, Hash: api.HashKey(readKey)},
		{Name: "other-crm", Tenant: otherTenant, Scope: api.ScopeWrite, Hash: api.HashKey(otherWriteKey)},
		{Name: "other-wallboard", Tenant: otherTenant, Scope: api.ScopeRead, Hash: api.HashKey(otherReadKey)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// testSecret is the callback secret of the API tests.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

func testSigner(t testing.TB) *api.CallbackSigner {
	t.Helper()
	s, err := api.NewCallbackSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testCallbackToken(tenant, transferID string) string {
	s, _ := api.NewCallbackSigner(testSecret)
	return s.Token(api.TokenTransfer, tenant, transferID)
}

func callbackPath(provider, tenant, transferID string) string {
	return "/callbacks/" + provider + "/" + transferID + "/" + testCallbackToken(tenant, transferID)
}

// One name for two keys of a tenant would make the logs, which name the
// key, lie about which one acted: refused, as one key under two names is.
// Another tenant may use the name.
func TestKeySetRefusesANameTwiceInATenant(t *testing.T) {
	w, r := api.HashKey("key-number-one-0001"), api.HashKey("key-number-two-0002")
	if _, err := api.NewKeySet([]api.Key{{Name: "crm", Tenant: "acme", Scope: api.ScopeWrite, Hash: w},
		{Name: "crm", Tenant: "acme", Scope: api.ScopeRead, Hash: r}}); err == nil {
		t.Error("two keys named crm in tenant acme were accepted")
	}
	if _, err := api.NewKeySet([]api.Key{{Name: "crm", Tenant: "acme", Scope: api.ScopeWrite, Hash: w},
		{Name: "crm", Tenant: "zeta", Scope: api.ScopeWrite, Hash: r}}); err != nil {
		t.Errorf("a key name in two tenants: %v", err)
	}
}
