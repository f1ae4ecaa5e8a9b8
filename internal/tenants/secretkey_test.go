package tenants_test

import (
	"strings"
	"testing"
)

// A secret written in braces, or as a field's name, is a mapping's key,
// which the errors quoted as an unknown field or secret reference: the
// secret itself, logged at every start and reload. A field's name that
// could be one of the file's (a typo) is still shown.
func TestASecretWrittenAsAKeyIsNotShown(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"a key written in braces", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {the-key-itself}\n",
			"line 7: a secret reference has env or file"},
		{"a webhook secret written in braces", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers: {netsapiens: {base_url: 'https://p.example', api_key: {env: ACME_NS_KEY}}}\n    webhooks:\n      - {name: crm, url: 'https://crm.example/hook', secrets: [{the-key-itself}]}\n",
			"line 6: a secret reference has env or file"},
		{"an API key written in braces as an entry of keys", "tenants:\n  - name: acme\n    keys:\n      - {the-key-itself}\n",
			"line 4"},
		{"an API key written as a field of its entry", "tenants:\n  - name: acme\n    keys:\n      - {name: k, the-key-itself: write}\n",
			"line 4"},
		{"a misspelt field", "tenants:\n  - name: acme\n    keys:\n      - {name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}\n    providers:\n      netsapiens:\n        base_ulr: https://pbx.example/ns-api/v2\n",
			"line 7: field base_ulr not found in type tenants.netsapiensSpec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused(t, tc.file, tc.want)
			if strings.Contains(err.Error(), "the-key") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
