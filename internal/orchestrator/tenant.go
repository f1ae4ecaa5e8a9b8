package orchestrator

import "context"

// DefaultTenant owns the transfers of a deployment without a tenants file
// (and of demo mode).
const DefaultTenant = "default"

type tenantKey struct{}

// WithTenant returns ctx carrying the tenant a request acts for; the API
// sets it from the caller's credentials. Every Engine method that reads
// or changes transfers is scoped to it: another tenant's transfer is not
// found.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantOf returns the tenant ctx carries, or DefaultTenant.
func TenantOf(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok && t != "" {
		return t
	}
	return DefaultTenant
}

// Accounts gives each tenant its own provider accounts (a CRM vendor
// serves many PBX customers from one deployment). Provider returns the
// account tenant uses for the provider called name; ok is false when the
// tenant has no such account. Names lists the provider names tenant may
// use, sorted. Implementations must be safe for concurrent use and may
// change their answers over time (a tenants file reloaded); a running
// transfer keeps the account it started with.
type Accounts interface {
	Provider(tenant, name string) (p Provider, ok bool)
	Names(tenant string) []string
}

// TenantLister is implemented by Accounts that can list their tenants (a
// tenants file's registry). The engine then knows every provider name a
// transfer may use, each tenant's as well as the default accounts', and
// exports the series alerts watch for each of them from the start (see
// Engine.exportWatched).
type TenantLister interface {
	Tenants() []string
}

// tenantOf is the tenant of a record; records written before tenants
// existed belong to the default one.
func tenantOf(t *Transfer) string {
	if t.Tenant == "" {
		return DefaultTenant
	}
	return t.Tenant
}
