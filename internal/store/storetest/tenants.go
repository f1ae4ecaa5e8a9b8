package storetest

import (
	"slices"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The one-active-transfer-per-call rule holds within a tenant: two
// tenants' PBXs may both have a user 1000 in a domain TEST. A record
// without a tenant belongs to the default one.
func testCreateOneActivePerCallPerTenant(f *fixture) {
	a := f.transfer("1000")
	a.Tenant = "acme"
	f.create(a)
	b := f.transfer("1000")
	b.Tenant = "globex"
	f.create(b)
	legacy := f.create(f.transfer("1000")) // Tenant "": the default tenant
	again := f.transfer("1000")
	again.Tenant = "acme"
	wantActive(f.T, "a second Create for acme's call", f.s.Create(f.ctx, again), a.ID)
	def := f.transfer("1000")
	def.Tenant = orchestrator.DefaultTenant
	wantActive(f.T, "Create for the default tenant's call", f.s.Create(f.ctx, def), legacy.ID)

	// Ending acme's transfer frees acme's call only.
	f.setState(a, orchestrator.StateCompleted, t0.Add(time.Second))
	f.create(again)
	wantActive(f.T, "Create for globex's call after acme's ended", f.s.Create(f.ctx, func() *orchestrator.Transfer {
		t := f.transfer("1000")
		t.Tenant = "globex"
		return t
	}()), b.ID)
}

// List filters by tenant (a record without one is the default tenant's),
// external id, the request's call (domain and user, case-insensitive; or
// call id), target and creation time (after inclusive, before exclusive),
// each with the cursor and the limit.
func testListTenantFilters(f *fixture) {
	mk := func(tenant, user, target, ext string) *orchestrator.Transfer {
		t := f.transfer(user)
		t.Tenant, t.Request.Target, t.Request.ExternalID = tenant, target, ext
		t.Request.Metadata = map[string]string{"ticket": ext}
		return f.create(t)
	}
	a1 := mk("acme", "1000", "1010", "crm-1")
	a2 := mk("acme", "1001", "1020", "crm-2")
	g3 := mk("globex", "1000", "1010", "crm-1")
	d4 := mk("", "1002", "1010", "")
	f.setState(a1, orchestrator.StateCancelled, t0.Add(time.Second)) // frees acme's call of user 1000
	a5 := mk("acme", "1000", "1020", "crm-1")
	a6 := func() *orchestrator.Transfer {
		t := f.bwTransfer("c-6")
		t.Tenant, t.Request.ExternalID = "acme", "crm-6"
		return f.create(t)
	}()
	a7 := func() *orchestrator.Transfer {
		t := f.transfer("1003")
		t.Tenant, t.Request.Call.Domain = "acme", "Other"
		return f.create(t)
	}()
	h8 := mk("hooli", "Agent8", "1010", "") // a user with letters, spelt in mixed case
	h9 := mk("hooli", "admin", "1030", "")
	h10 := mk("hooli", "agents", "1030", "")
	f.setState(a5, orchestrator.StateConsulting, t0.Add(time.Second))
	f.setState(a2, orchestrator.StateCompleted, t0.Add(time.Second))
	f.setState(a7, orchestrator.StateFailed, t0.Add(time.Second))

	created := func(t *orchestrator.Transfer) time.Time { return t.CreatedAt }
	micro := func(t *orchestrator.Transfer) time.Time { return t.CreatedAt.Truncate(orchestrator.CreatedResolution) }
	cases := []struct {
		name string
		f    orchestrator.ListFilter
		want []*orchestrator.Transfer
		more bool
	}{
		{"tenant", orchestrator.ListFilter{Tenant: "acme"}, []*orchestrator.Transfer{a7, a6, a5, a2, a1}, false},
		{"default tenant", orchestrator.ListFilter{Tenant: orchestrator.DefaultTenant}, []*orchestrator.Transfer{d4}, false},
		{"unknown tenant", orchestrator.ListFilter{Tenant: "initech"}, nil, false},
		{"tenant page", orchestrator.ListFilter{Tenant: "acme", Limit: 2}, []*orchestrator.Transfer{a7, a6}, true},
		{"tenant cursor", orchestrator.ListFilter{Tenant: "acme", Limit: 2, After: a6.ID}, []*orchestrator.Transfer{a5, a2}, true},
		{"external id", orchestrator.ListFilter{Tenant: "acme", ExternalID: "crm-1"}, []*orchestrator.Transfer{a5, a1}, false},
		{"external id, another tenant", orchestrator.ListFilter{Tenant: "globex", ExternalID: "crm-1"}, []*orchestrator.Transfer{g3}, false},
		{"external id cursor", orchestrator.ListFilter{Tenant: "acme", ExternalID: "crm-1", Limit: 1, After: a5.ID}, []*orchestrator.Transfer{a1}, false},
		{"call", orchestrator.ListFilter{Tenant: "acme", Domain: "TEST", User: "1000"}, []*orchestrator.Transfer{a5, a1}, false},
		{"call, domain in another case", orchestrator.ListFilter{Tenant: "acme", Domain: "test", User: "1000"}, []*orchestrator.Transfer{a5, a1}, false},
		{"call, another domain", orchestrator.ListFilter{Tenant: "acme", Domain: "OTHER", User: "1000"}, nil, false},
		{"call page", orchestrator.ListFilter{Tenant: "acme", Domain: "TEST", User: "1000", Limit: 1}, []*orchestrator.Transfer{a5}, true},
		{"call id", orchestrator.ListFilter{Tenant: "acme", CallID: "c-6"}, []*orchestrator.Transfer{a6}, false},
		{"call id, another tenant", orchestrator.ListFilter{Tenant: "globex", CallID: "c-6"}, nil, false},
		{"target", orchestrator.ListFilter{Tenant: "acme", Target: "1020"}, []*orchestrator.Transfer{a5, a2}, false},
		{"target cursor", orchestrator.ListFilter{Tenant: "acme", Target: "1010", After: a7.ID}, []*orchestrator.Transfer{a6, a1}, false},
		{"call, domain only in another case", orchestrator.ListFilter{Tenant: "acme", Domain: "OTHER", User: "1003"}, []*orchestrator.Transfer{a7}, false},
		// The user too matches in any case, as CallKey and the PBX do: a
		// create of AGENT8 is refused for h8, so a list of AGENT8 finds it.
		{"call, user as spelt", orchestrator.ListFilter{Tenant: "hooli", Domain: "TEST", User: "Agent8"}, []*orchestrator.Transfer{h8}, false},
		{"call, user in another case", orchestrator.ListFilter{Tenant: "hooli", Domain: "test", User: "AGENT8"}, []*orchestrator.Transfer{h8}, false},
		{"call, another user", orchestrator.ListFilter{Tenant: "hooli", Domain: "TEST", User: "Agent9"}, nil, false},
		// Folded as strings.ToLower folds (CallKey), in every store: "İ"
		// lowers to "i"; "ſ" is lower case already (EqualFold would
		// match it with "s").
		{"call, user with a letter that lowers to ASCII", orchestrator.ListFilter{Tenant: "hooli", Domain: "TEST", User: "admİn"}, []*orchestrator.Transfer{h9}, false},
		{"call, user with a lower-case letter that folds to ASCII", orchestrator.ListFilter{Tenant: "hooli", Domain: "TEST", User: "agentſ"}, nil, false},
		{"call, user as spelt, another target", orchestrator.ListFilter{Tenant: "hooli", Domain: "TEST", User: "agents"}, []*orchestrator.Transfer{h10}, false},
		{"created after (inclusive)", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: created(a5)}, []*orchestrator.Transfer{a7, a6, a5}, false},
		{"created before (exclusive)", orchestrator.ListFilter{Tenant: "acme", CreatedBefore: created(a5)}, []*orchestrator.Transfer{a2, a1}, false},
		// The bounds are compared to the microsecond (CreatedResolution),
		// as PostgreSQL keeps creation times: a nanosecond after a5's
		// creation (123456789 ns into its second) is still a5's
		// microsecond, on every store.
		{"created after, a nanosecond after a5", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: created(a5).Add(time.Nanosecond)},
			[]*orchestrator.Transfer{a7, a6, a5}, false},
		{"created after, a5's next microsecond", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: micro(a5).Add(time.Microsecond)},
			[]*orchestrator.Transfer{a7, a6}, false},
		{"created before, a nanosecond after a5", orchestrator.ListFilter{Tenant: "acme", CreatedBefore: created(a5).Add(time.Nanosecond)},
			[]*orchestrator.Transfer{a2, a1}, false},
		{"created before, a5's next microsecond", orchestrator.ListFilter{Tenant: "acme", CreatedBefore: micro(a5).Add(time.Microsecond)},
			[]*orchestrator.Transfer{a5, a2, a1}, false},
		{"created between", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: created(a2), CreatedBefore: created(a6)},
			[]*orchestrator.Transfer{a5, a2}, false},
		{"created between, page", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: created(a1), CreatedBefore: created(a7), Limit: 2},
			[]*orchestrator.Transfer{a6, a5}, true},
		{"created between, cursor", orchestrator.ListFilter{Tenant: "acme", CreatedAfter: created(a1), CreatedBefore: created(a7), Limit: 2, After: a5.ID},
			[]*orchestrator.Transfer{a2, a1}, false},
		{"states", orchestrator.ListFilter{Tenant: "acme", States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateFailed, orchestrator.StateCancelled}},
			[]*orchestrator.Transfer{a7, a6, a1}, false},
		{"states page", orchestrator.ListFilter{Tenant: "acme", States: []orchestrator.State{orchestrator.StateCancelled, orchestrator.StateFailed, orchestrator.StatePending}, Limit: 2},
			[]*orchestrator.Transfer{a7, a6}, true},
		{"states cursor", orchestrator.ListFilter{Tenant: "acme", States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateCancelled, orchestrator.StateFailed, orchestrator.StatePending},
			Limit: 1, After: a6.ID}, []*orchestrator.Transfer{a1}, false},
		{"one state", orchestrator.ListFilter{Tenant: "acme", States: []orchestrator.State{orchestrator.StateCancelled}}, []*orchestrator.Transfer{a1}, false},
		{"state, another tenant", orchestrator.ListFilter{Tenant: "globex", States: []orchestrator.State{orchestrator.StatePending}}, []*orchestrator.Transfer{g3}, false},
		{"provider", orchestrator.ListFilter{Tenant: "acme", Provider: "Bandwidth"}, []*orchestrator.Transfer{a6}, false},
		{"all tenants", orchestrator.ListFilter{Target: "1010"}, []*orchestrator.Transfer{h8, a7, a6, d4, g3, a1}, false},
	}
	for _, c := range cases {
		if c.f.Limit == 0 {
			c.f.Limit = 100
		}
		got, more := f.list(c.f)
		if want := idsOf(c.want...); !slices.Equal(got, want) || more != c.more {
			f.Errorf("%s: List(%+v) = %v, %v; want %v, %v", c.name, c.f, got, more, want, c.more)
		}
	}
	// The request's new fields come back with the record.
	ts, _, err := f.s.List(f.ctx, orchestrator.ListFilter{Tenant: "acme", ExternalID: "crm-2", Limit: 1})
	if err != nil || len(ts) != 1 {
		f.Fatalf("List by external id: %v, %v", ids(ts), err)
	}
	f.equal("a listed record with an external id and metadata", ts[0], a2)
	if got := strings.Join([]string{ts[0].Tenant, ts[0].Request.ExternalID, ts[0].Request.Metadata["ticket"]}, " "); got != "acme crm-2 crm-2" {
		f.Errorf("tenant, external id, metadata = %q", got)
	}
}
