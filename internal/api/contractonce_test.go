package api_test

import (
	"sync"
	"testing"
)

// loaded is openapi.yaml as parseContract left it, parsed once for the
// package: under -race a parse takes seconds (kin-openapi's validation of
// the document, most of it), and a dozen tests ask for it, some in each of
// their subtests. Shared by every test: read it, never change it.
var loaded struct {
	once sync.Once
	c    *contract
}

// loadContract returns the package's contract, parsed by the first test
// that asks; that test fails when the document is not valid, and so does
// every test after it.
func loadContract(t *testing.T) *contract {
	t.Helper()
	loaded.once.Do(func() { loaded.c = parseContract(t) })
	if loaded.c == nil {
		t.Fatal("openapi.yaml did not load (see the first test that loaded it)")
	}
	return loaded.c
}
