// Package tenants reads TRANSFERD_TENANTS_FILE: the tenants one transferd
// serves, each with its API keys, its own provider accounts, allow-lists
// and limits. The Registry it builds answers the engine (its accounts) and
// the API (keys, allow-lists, limits), and reloads on SIGHUP or when the
// file or a secret file it names changes; a reload that fails validation
// keeps the configuration in force.
package tenants

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/webhooks"
)

// fileSpec is the file's shape.
type fileSpec struct {
	Tenants []tenantSpec `yaml:"tenants"`
}

type tenantSpec struct {
	Name      string        `yaml:"name"`
	Keys      []keySpec     `yaml:"keys"`
	Providers providersSpec `yaml:"providers"`
	Allow     allowSpec     `yaml:"allow"`
	Limits    limitsSpec    `yaml:"limits"`
	Webhooks  []webhookSpec `yaml:"webhooks"`
}

type keySpec struct {
	Name  string `yaml:"name"`
	Hash  string `yaml:"hash"`
	Scope string `yaml:"scope"`
}

type providersSpec struct {
	NetSapiens *netsapiensSpec `yaml:"netsapiens"`
	Bandwidth  *bandwidthSpec  `yaml:"bandwidth"`
}

type netsapiensSpec struct {
	BaseURL       string    `yaml:"base_url"`
	APIKey        secretRef `yaml:"api_key"`
	AutoAnswer    *bool     `yaml:"auto_answer"`
	JoinHostname  string    `yaml:"join_hostname"`
	RequestBudget float64   `yaml:"request_budget"`
	RequestBurst  int       `yaml:"request_burst"`
}

type bandwidthSpec struct {
	BaseURL       string    `yaml:"base_url"`
	UserID        string    `yaml:"user_id"`
	APIToken      secretRef `yaml:"api_token"`
	APISecret     secretRef `yaml:"api_secret"`
	RequestBudget float64   `yaml:"request_budget"`
	RequestBurst  int       `yaml:"request_burst"`
}

type allowSpec struct {
	Domains []string `yaml:"domains"`
	Targets []string `yaml:"targets"`
}

type limitsSpec struct {
	StartsPerSecond float64 `yaml:"starts_per_second"`
	StartBurst      int     `yaml:"start_burst"`
	MaxInFlight     int     `yaml:"max_in_flight"`
	MaxWaits        int     `yaml:"max_waits"`
}

// secretRef names where a secret is, the way Kubernetes mounts secrets:
// {env: NAME} or {file: /path}. A secret is never written inline.
type secretRef struct {
	Env  string
	File string
	line int
}

func (s *secretRef) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	if n.Kind != yaml.MappingNode {
		// The value is not echoed: it may be the secret itself.
		return fmt.Errorf("line %d: a secret is given by reference, {env: NAME} or {file: /path}, never inline", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			if k.Value != "env" && k.Value != "file" {
				// Not named: a secret written in braces is a key.
				return fmt.Errorf("line %d: a secret reference has env or file, nothing else (what is given is not shown: it may be the secret itself)", k.Line)
			}
			return fmt.Errorf("line %d: %s must be a string", v.Line, k.Value)
		}
		// yaml.v3 refuses a key twice only where it decodes the mapping
		// itself; here the last would have won silently.
		for j := 0; j < i; j += 2 {
			if n.Content[j].Value == k.Value {
				return fmt.Errorf("line %d: %s is given more than once in a secret reference", k.Line, k.Value)
			}
		}
		switch k.Value {
		case "env":
			s.Env = v.Value
		case "file":
			s.File = v.Value
		default:
			// Not quoted: a secret written in braces ({the-key}) is a
			// mapping's key, and lands here.
			return fmt.Errorf("line %d: a secret reference has env or file, nothing else (what is given is not shown: it may be the secret itself)", k.Line)
		}
	}
	if (s.Env == "") == (s.File == "") {
		return fmt.Errorf("line %d: a secret reference has exactly one of env and file", n.Line)
	}
	return nil
}

// Account is one tenant's account at one provider, secrets resolved. It
// never prints its secrets.
type Account struct {
	Tenant   string
	Provider string // "netsapiens" or "bandwidth"
	BaseURL  string
	// NetSapiens.
	APIKey     string
	AutoAnswer *bool
	// JoinHostname is netsapiens.Config's; "" takes the environment's.
	JoinHostname string
	// Bandwidth.
	UserID              string
	APIToken, APISecret string
	// RequestBudget is requests per second (0: none), RequestBurst its
	// bucket.
	RequestBudget float64
	RequestBurst  int
}

// String names the account without its secrets.
func (a Account) String() string {
	return fmt.Sprintf("%s account of tenant %s at %s", a.Provider, a.Tenant, a.BaseURL)
}

// GoString keeps %#v from printing secrets too.
func (a Account) GoString() string { return a.String() }

// parsed is a validated file.
type parsed struct {
	keys    []api.Key
	tenants []*tenantConfig
	files   []string // secret files named, watched for changes
	// stamps are the files' stamps (see stamp), each taken before the
	// file was read: a file changed while it was read is seen as changed
	// at the next poll, not taken as the one loaded.
	stamps string
	warns  []string
}

type tenantConfig struct {
	name     string
	accounts []Account
	domains  map[string]bool
	targets  []*regexp.Regexp
	limits   api.Limits
	// limitsSet says which limits the file gives (others are defaults).
	limitsSpec limitsSpec
	webhooks   []webhooks.Endpoint
}

// errorList collects errors that name their line.
type errorList []string

func (e *errorList) add(line int, format string, args ...any) {
	*e = append(*e, fmt.Sprintf("line %d: %s", line, fmt.Sprintf(format, args...)))
}

// envNameRE is what a POSIX shell takes for a variable's name.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quotedValue is a value yaml.v3 quotes in an error ("cannot unmarshal
// !!str `sk_live...` into tenants.keySpec", "cannot decode !!str `…` as
// a !!int"), up to the last quote before the type: the value may hold a
// backtick of its own, and a quote taken for its end left its start shown.
var quotedValue = regexp.MustCompile("(?s)`.*` (into|as a) ")

// unknownField and duplicateKey are yaml.v3's errors for a mapping key its
// type lacks (KnownFields) and one given twice, and fieldName what the
// file's fields are made of; anchor is its error naming an anchor, which
// is what a secret beginning with * or & is taken for.
var (
	unknownField = regexp.MustCompile(`^(line \d+: field )(.*)( not found in type .*)$`)
	duplicateKey = regexp.MustCompile(`^(line \d+: mapping key )(".*")( already defined at line \d+)$`)
	fieldName    = regexp.MustCompile(`^[a-z_]{1,32}$`)
	anchor       = regexp.MustCompile(`(?s)(anchor )'.*'( referenced| value contains itself)`)
)

// unquoted drops the values a type error quotes. The value in the wrong
// place is most often a secret written where its reference or its hash
// goes (an API key itself as an entry of keys:), and the error is logged
// at every start and reload. The line and the type expected say enough.
// So is an unknown field's name unless it could be one of the file's (a
// typo, worth showing): a secret written in braces ({the-key}) is a
// mapping's key.
func unquoted(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if err == nil {
			return nil
		}
		// A syntax error, or one yaml.v3 gives up at ("unknown anchor
		// 'sk_live…' referenced").
		return errors.New(unquotedMsg(err.Error()))
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = unquotedMsg(m)
	}
	return &yaml.TypeError{Errors: msgs}
}

// unquotedMsg is one of yaml.v3's messages without what may be a secret.
func unquotedMsg(m string) string {
	const notShown = "(name not shown: it may be a secret)"
	if f := unknownField.FindStringSubmatch(m); f != nil && !fieldName.MatchString(f[2]) {
		m = f[1] + notShown + f[3]
	}
	if f := duplicateKey.FindStringSubmatch(m); f != nil {
		if name, err := strconv.Unquote(f[2]); err != nil || !fieldName.MatchString(name) {
			m = f[1] + notShown + f[3]
		}
	}
	m = anchor.ReplaceAllString(m, "${1}"+notShown+"${2}")
	return quotedValue.ReplaceAllString(m, "$1 ")
}

// parse reads and validates a tenants file. lookupEnv resolves {env: …}.
// The parsed file is returned with an error too, holding the secret
// files named (and their stamps) only: a reload refused because a secret
// file is missing or empty is tried again once that file changes.
func parse(data []byte, lookupEnv func(string) (string, bool)) (*parsed, error) {
	p := &parsed{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return p, unquoted(err)
	}
	var f fileSpec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return p, unquoted(err)
	}
	at := func(path ...any) int { return lineOf(&root, path...) }
	var errs errorList
	if len(f.Tenants) == 0 {
		errs.add(at("tenants"), "no tenant is declared (tenants: [...])")
	}
	seen := map[string]int{}
	secret := func(ref secretRef, what string) string {
		switch {
		case ref.line == 0:
			errs.add(at(), "%s is required", what)
			return ""
		case ref.Env != "" && !envNameRE.MatchString(ref.Env):
			// Not quoted: what is not a variable's name is most often
			// the secret itself, written where its reference goes, and
			// the error is logged at every start and reload.
			errs.add(ref.line, "%s: env must name an environment variable (letters, digits and '_', not starting with a digit); what is given is not one, and is not shown: it may be the secret itself", what)
			return ""
		case ref.Env != "":
			v, ok := lookupEnv(ref.Env)
			v = strings.TrimSpace(v)
			switch {
			case !ok:
				errs.add(ref.line, "%s: environment variable %s is not set", what, ref.Env)
			case v == "":
				// Blanks only, as a secret file of blanks is "empty": a
				// mis-templated value, refused rather than used.
				errs.add(ref.line, "%s: environment variable %s is empty", what, ref.Env)
			}
			return v
		default:
			p.files = append(p.files, ref.File)
			p.stamps += stamp([]string{ref.File})
			b, err := os.ReadFile(ref.File)
			if err != nil {
				// A path that is not absolute is not quoted: it may be
				// the secret itself (a mounted secret's path is absolute).
				name := ref.File
				if !filepath.IsAbs(name) {
					name = "the relative path given (not shown: it may be the secret itself)"
				}
				errs.add(ref.line, "%s: cannot read %s: %v", what, name, errors.Unwrap(err))
				return ""
			}
			if v := strings.TrimSpace(string(b)); v != "" {
				return v
			}
			errs.add(ref.line, "%s: %s is empty", what, ref.File)
			return ""
		}
	}
	for i, ts := range f.Tenants {
		t := &tenantConfig{name: ts.Name, domains: map[string]bool{}, limitsSpec: ts.Limits}
		if !api.NameRE.MatchString(ts.Name) {
			errs.add(at("tenants", i, "name"), "tenant name %q: lower-case letters, digits, '-' or '_', at most 63", ts.Name)
		} else if prev, dup := seen[ts.Name]; dup {
			errs.add(at("tenants", i, "name"), "tenant %s is declared twice (also line %d)", ts.Name, prev)
		}
		seen[ts.Name] = at("tenants", i, "name")
		if len(ts.Keys) == 0 {
			errs.add(at("tenants", i), "tenant %s has no API key (keys: [...])", ts.Name)
		}
		keyNames := map[string]bool{}
		for j, k := range ts.Keys {
			// Logs and audit lines name the key: two keys of one name
			// (a reader and a writer, say) could not be told apart, nor
			// the one to revoke after a leak.
			if keyNames[k.Name] {
				errs.add(at("tenants", i, "keys", j), "key name %q is given twice in tenant %s", k.Name, ts.Name)
			}
			keyNames[k.Name] = true
			h, err := api.ParseKeyHash(k.Hash)
			if err != nil {
				errs.add(at("tenants", i, "keys", j, "hash"), "key hash %v (sha256sum of the key)", err)
			}
			scope := api.Scope(k.Scope)
			if scope != api.ScopeRead && scope != api.ScopeWrite {
				errs.add(at("tenants", i, "keys", j), "key scope must be read or write")
			}
			if !api.NameRE.MatchString(k.Name) {
				errs.add(at("tenants", i, "keys", j), "key name %q: lower-case letters, digits, '-' or '_', at most 63", k.Name)
			}
			p.keys = append(p.keys, api.Key{Name: k.Name, Tenant: ts.Name, Scope: scope, Hash: h})
		}
		ns, bw := ts.Providers.NetSapiens, ts.Providers.Bandwidth
		if ns == nil && bw == nil {
			errs.add(at("tenants", i), "tenant %s has no provider account (providers: netsapiens or bandwidth)", ts.Name)
		}
		checkURL := func(raw string, path ...any) string {
			u, err := url.Parse(strings.TrimRight(raw, "/"))
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				errs.add(at(path...), "base_url must be an absolute http(s) URL")
			case u.User != nil:
				// Never in a URL: it would end up in logs. The URL is not
				// echoed either.
				errs.add(at(path...), "base_url must not carry credentials; give them as secrets")
			case u.RawQuery != "" || u.Fragment != "":
				errs.add(at(path...), "base_url must not have a query or fragment")
			case u.Scheme == "http":
				p.warns = append(p.warns, fmt.Sprintf("line %d: tenant %s: base_url is plain http: credentials cross the network in clear", at(path...), ts.Name))
			}
			return raw
		}
		budget := func(rps float64, burst int, path ...any) {
			if rps < 0 || burst < 0 {
				errs.add(at(path...), "request_budget and request_burst must not be negative")
			}
		}
		if ns != nil {
			base := []any{"tenants", i, "providers", "netsapiens"}
			a := Account{Tenant: ts.Name, Provider: "netsapiens", AutoAnswer: ns.AutoAnswer, JoinHostname: ns.JoinHostname,
				RequestBudget: ns.RequestBudget, RequestBurst: ns.RequestBurst}
			switch ns.JoinHostname {
			case "", "caller", "consult":
			default:
				errs.add(at(append(base, "join_hostname")...), "join_hostname %q is neither caller nor consult", ns.JoinHostname)
			}
			a.BaseURL = checkURL(ns.BaseURL, append(base, "base_url")...)
			ns.APIKey.line = lineOr(ns.APIKey.line, at(base...))
			a.APIKey = secretOrMissing(ns.APIKey, "netsapiens api_key", at(base...), &errs, secret)
			budget(ns.RequestBudget, ns.RequestBurst, base...)
			t.accounts = append(t.accounts, a)
		}
		if bw != nil {
			base := []any{"tenants", i, "providers", "bandwidth"}
			a := Account{Tenant: ts.Name, Provider: "bandwidth", UserID: bw.UserID,
				RequestBudget: bw.RequestBudget, RequestBurst: bw.RequestBurst}
			a.BaseURL = bw.BaseURL
			if a.BaseURL != "" {
				checkURL(bw.BaseURL, append(base, "base_url")...)
			}
			if bw.UserID == "" {
				errs.add(at(base...), "bandwidth user_id is required")
			}
			a.APIToken = secretOrMissing(bw.APIToken, "bandwidth api_token", at(base...), &errs, secret)
			a.APISecret = secretOrMissing(bw.APISecret, "bandwidth api_secret", at(base...), &errs, secret)
			budget(bw.RequestBudget, bw.RequestBurst, base...)
			t.accounts = append(t.accounts, a)
		}
		for j, d := range ts.Allow.Domains {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "" {
				errs.add(at("tenants", i, "allow", "domains", j), "an empty domain")
			}
			t.domains[d] = true
		}
		if len(ts.Allow.Domains) > 0 && ns == nil {
			errs.add(at("tenants", i, "allow", "domains"), "domains restrict NetSapiens calls, but tenant %s has no netsapiens account", ts.Name)
		}
		for j, pat := range ts.Allow.Targets {
			// Anchored: a pattern says what a whole target looks like.
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				errs.add(at("tenants", i, "allow", "targets", j), "target pattern: %v", err)
				continue
			}
			t.targets = append(t.targets, re)
		}
		l := ts.Limits
		if l.StartsPerSecond < 0 || l.StartBurst < 0 || l.MaxInFlight < 0 || l.MaxWaits < 0 {
			errs.add(at("tenants", i, "limits"), "limits must not be negative")
		}
		t.webhooks = parseWebhooks(ts.Webhooks, i, at, &errs, secret)
		p.tenants = append(p.tenants, t)
	}
	if len(errs) == 0 {
		if _, err := api.NewKeySet(p.keys); err != nil {
			errs.add(at("tenants"), "%v", err)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return lineNum(errs[i]) < lineNum(errs[j]) })
		return &parsed{files: p.files, stamps: p.stamps}, errors.New(strings.Join(errs, "\n"))
	}
	return p, nil
}

func secretOrMissing(ref secretRef, what string, line int, errs *errorList, resolve func(secretRef, string) string) string {
	if ref.Env == "" && ref.File == "" {
		errs.add(line, "%s is required ({env: NAME} or {file: /path})", what)
		return ""
	}
	return resolve(ref, what)
}

func lineOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func lineNum(s string) int {
	var n int
	_, _ = fmt.Sscanf(s, "line %d:", &n)
	return n
}

// lineOf returns the line of the node at path (mapping keys and sequence
// indexes), or of the deepest node on the way that exists.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, step := range path {
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						line = n.Content[i].Line
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s < len(n.Content) {
				next = n.Content[s]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
