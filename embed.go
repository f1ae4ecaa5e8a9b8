// Package transferd holds files that ship inside the binary.
package transferd

import _ "embed"

// OpenAPI is the API contract, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
