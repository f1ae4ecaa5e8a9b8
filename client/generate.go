package client

// The generator is pinned in the tools module (tools/go.mod), so that
// every regeneration uses the same version.
//go:generate go tool -modfile=../tools/go.mod oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
