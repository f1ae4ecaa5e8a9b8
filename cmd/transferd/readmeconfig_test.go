package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTheConfigurationTableIsTheCode holds the README's configuration
// table to the configuration: every variable config reads is in the table,
// the table names no other, and each default the table gives is the one
// the code takes (a variable without a default in the code has none in
// the table: "host name", in words, is how TRANSFERD_INSTANCE_ID's is
// computed, not a value). An operator reads the table, not config.go.
func TestTheConfigurationTableIsTheCode(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("the README has no Configuration section")
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}

	code := map[string]string{} // variable: its default in the code
	ct := reflect.TypeFor[config]()
	for i := range ct.NumField() {
		if name := ct.Field(i).Tag.Get("envconfig"); name != "" {
			code[name] = ct.Field(i).Tag.Get("default")
		}
	}

	ticked := regexp.MustCompile("`([^`]*)`")
	table := map[string]string{}
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `TRANSFERD_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			t.Errorf("the README's row %q has no default column", line)
			continue
		}
		// A row may name several variables, the later ones by the part
		// after the common prefix (`TRANSFERD_READ_TIMEOUT`, `_WRITE_TIMEOUT`),
		// with one default each, in order.
		var names []string
		for _, m := range ticked.FindAllStringSubmatch(cells[1], -1) {
			name := m[1]
			if strings.HasPrefix(name, "_") {
				name = "TRANSFERD" + name
			}
			names = append(names, name)
		}
		var defaults []string
		for _, m := range ticked.FindAllStringSubmatch(cells[2], -1) {
			defaults = append(defaults, m[1])
		}
		if len(defaults) != 0 && len(defaults) != len(names) {
			t.Errorf("the README's row for %v gives %d defaults", names, len(defaults))
			continue
		}
		for i, name := range names {
			if _, dup := table[name]; dup {
				t.Errorf("the README's configuration table names %s twice", name)
			}
			table[name] = ""
			if len(defaults) != 0 {
				table[name] = defaults[i]
			}
		}
	}

	for name, def := range code {
		doc, ok := table[name]
		switch {
		case !ok:
			t.Errorf("%s is read by transferd but not in the README's configuration table", name)
		case !sameDefault(doc, def):
			t.Errorf("%s: the README's configuration table gives the default %q, the code %q", name, doc, def)
		}
	}
	for name := range table {
		if _, ok := code[name]; !ok {
			t.Errorf("the README's configuration table names %s, which transferd does not read", name)
		}
	}
}

// sameDefault reports whether the README's default doc is the code's def:
// the same text, or the same duration written another way (2m, 120s).
func sameDefault(doc, def string) bool {
	if doc == def {
		return true
	}
	a, errA := time.ParseDuration(doc)
	b, errB := time.ParseDuration(def)
	return errA == nil && errB == nil && a == b
}
