package tenants_test

import (
	"strings"
	"testing"
)

// No part of a secret written where it does not belong is shown by the
// file's errors, which are logged at every start and reload, whatever
// YAML makes of it: an alias (a secret beginning with *), a value with a
// backtick in a type error (whose quotes the value's own backtick cut
// short), a key given twice, an explicit tag, or a secret reference whose
// key is the secret.
func TestAYAMLErrorShowsNoPartOfASecret(t *testing.T) {
	const head = "tenants:\n  - name: acme\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"an alias", head + "    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: *the-key-itself\n",
			"anchor"},
		{"a backtick in a value of the wrong type", head + "    keys:\n      - the-k`ey-itself\n",
			"line 4: cannot unmarshal !!str into tenants.keySpec"},
		{"a key given twice", head + "    keys:\n      - {the-key-itself: 1, the-key-itself: 2}\n",
			"line 4: mapping key"},
		{"an explicit tag", head + "    keys:\n      - !!int the-key-itself\n",
			"cannot decode !!str as a !!int"},
		{"a secret reference's key with a value that is not a string", head + "    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {the-key-itself: [1]}\n",
			"line 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused(t, tc.file, tc.want)
			if strings.Contains(err.Error(), "the-k") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
