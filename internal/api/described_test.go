package api_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// Every property of every schema in openapi.yaml (components, request and
// response bodies, webhooks) has a description, its own or its referenced
// schema's: the generated Go and TypeScript clients carry it as the
// field's documentation, and a field without one (Outcome.detail,
// Step.name, WebhookDelivery.status, …) left its users to guess what it
// holds (found by review).
func TestEverySchemaPropertyIsDescribed(t *testing.T) {
	c := loadContract(t)
	var missing []string
	seen := map[*openapi3.Schema]bool{}
	var walk func(at string, s *openapi3.Schema)
	walk = func(at string, s *openapi3.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		for name, p := range s.Properties {
			if p.Value == nil {
				continue
			}
			if p.Value.Description == "" {
				missing = append(missing, at+"."+name)
			}
			walk(at+"."+name, p.Value)
		}
		if s.Items != nil {
			walk(at+"[]", s.Items.Value)
		}
		if s.AdditionalProperties.Schema != nil {
			walk(at+"{}", s.AdditionalProperties.Schema.Value)
		}
		for _, of := range [][]*openapi3.SchemaRef{s.AllOf, s.OneOf, s.AnyOf} {
			for _, r := range of {
				walk(at, r.Value)
			}
		}
	}
	for name, s := range c.doc.Components.Schemas {
		walk(name, s.Value)
	}
	content := func(at string, cs openapi3.Content) {
		for mt, m := range cs {
			if m.Schema != nil && m.Schema.Ref == "" {
				walk(fmt.Sprintf("%s %s", at, mt), m.Schema.Value)
			}
		}
	}
	ops := func(path string, item *openapi3.PathItem) {
		for method, op := range item.Operations() {
			at := method + " " + path
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				content(at+" request", op.RequestBody.Value.Content)
			}
			for status, r := range op.Responses.Map() {
				if r.Ref == "" && r.Value != nil {
					content(at+" "+status, r.Value.Content)
				}
			}
		}
	}
	for path, item := range c.doc.Paths.Map() {
		ops(path, item)
	}
	for name, item := range c.doc.Webhooks {
		ops("webhook "+name, item)
	}
	for name, r := range c.doc.Components.Responses {
		if r.Value != nil {
			content("response "+name, r.Value.Content)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("openapi.yaml: %s has no description", m)
	}
}
