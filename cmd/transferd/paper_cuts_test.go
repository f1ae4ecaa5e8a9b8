package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestHelpHasOneHeader(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "environment"); n != 1 {
		t.Errorf("-h mentions the environment %d times, want one header:\n%.600s", n, out.String())
	}
}

func TestDatabaseURLForms(t *testing.T) {
	for dsn, ok := range map[string]bool{
		"postgres://transferd:pw@db:5432/transferd?sslmode=require":                     true,
		"postgresql://db/transferd":                                                     true,
		"host=db port=5432 dbname=transferd user=transferd password=pw sslmode=require": true,
		"mysql://db/transferd":                                                          false,
		"db:5432":                                                                       false,
	} {
		t.Setenv("TRANSFERD_DATABASE_URL", dsn)
		cfg, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.validate()
		if (err == nil) != ok {
			t.Errorf("%q: validate = %v, want accepted %v", dsn, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error shows the password: %v", dsn, err)
		}
	}
}

func TestDemoConfigLogNamesNoRealProvider(t *testing.T) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.demo() {
		t.Skip("a provider is configured in this environment")
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", cfg).Msg("starting")
	if strings.Contains(buf.String(), "catapult.inetwork.com") {
		t.Errorf("the demo configuration log names the real Catapult URL: %s", buf.String())
	}
}

// TestTrustedProxiesAreCheckedAndNormalised: the router hands every item
// of TRANSFERD_TRUSTED_PROXIES to netip.MustParsePrefix, which panics on
// one it refuses. validate refuses a bad item by name, and keeps good
// ones as the router reads them: trimmed (envconfig splits at commas but
// keeps the spaces), a bare address as its single-address prefix.
func TestTrustedProxiesAreCheckedAndNormalised(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want []string // nil: refused
		bad  string   // the item the refusal names
	}{
		{env: "10.0.0.0/8, 192.168.0.0/16 ,fd00::/8", want: []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8"}},
		{env: "10.0.0.1, 2001:db8::1", want: []string{"10.0.0.1/32", "2001:db8::1/128"}},
		{env: "10.0.0.0/8, 10.0.0.0/33", bad: `"10.0.0.0/33"`},
		{env: "10.0.0.0/8,", bad: `""`},
		{env: "proxy.internal", bad: `"proxy.internal"`},
		{env: "fe80::1%eth0", bad: `"fe80::1%eth0"`},
		{env: "10.0.0.0/8/8", bad: `"10.0.0.0/8/8"`},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("TRANSFERD_TRUSTED_PROXIES", tc.env)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), "TRANSFERD_TRUSTED_PROXIES: "+tc.bad) {
					t.Errorf("validate = %v, want TRANSFERD_TRUSTED_PROXIES refused naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate = %v", err)
			}
			if !slices.Equal(cfg.TrustedProxies, tc.want) {
				t.Errorf("TrustedProxies = %q, want %q", cfg.TrustedProxies, tc.want)
			}
			for _, p := range cfg.TrustedProxies {
				if _, err := netip.ParsePrefix(p); err != nil {
					t.Errorf("kept %q, which the router cannot parse: %v", p, err)
				}
			}
		})
	}
}

// TestNegativeLimitsAreRefused: a negative budget or tenant limit is a
// mistake, refused by name, not read as some other limit (a negative
// start burst was taken as a burst of 1).
func TestNegativeLimitsAreRefused(t *testing.T) {
	for _, name := range []string{"TRANSFERD_NETSAPIENS_REQUEST_BUDGET", "TRANSFERD_BANDWIDTH_REQUEST_BUDGET",
		"TRANSFERD_TENANT_START_RATE", "TRANSFERD_TENANT_START_BURST", "TRANSFERD_TENANT_MAX_IN_FLIGHT", "TRANSFERD_TENANT_MAX_WAITS"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "-1")
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=-1: validate = %v, want it refused by name", name, err)
			}
		})
	}
}

// TestPublicURLCredentialsAreRedactedInTheConfigLog: TRANSFERD_PUBLIC_URL
// may carry user information (a gateway's basic auth); the configuration
// log shows the URL without it, as it does the provider URLs.
func TestPublicURLCredentialsAreRedactedInTheConfigLog(t *testing.T) {
	t.Setenv("TRANSFERD_PUBLIC_URL", "https://cb:TopSecretPw@transferd.example.com/hooks")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", cfg).Msg("starting")
	if strings.Contains(buf.String(), "TopSecretPw") || !strings.Contains(buf.String(), "transferd.example.com/hooks") {
		t.Errorf("the configuration log shows TRANSFERD_PUBLIC_URL as: %s", buf.String())
	}
}

// TestProviderURLCredentialsAreRedactedInTheConfigLog: a provider URL
// with user information is refused at start (validate), but the
// configuration is logged before that verdict: the log shows each URL
// without it. With the NetSapiens URL left out of the redaction (a
// mutation no test caught) its password was written to the log.
func TestProviderURLCredentialsAreRedactedInTheConfigLog(t *testing.T) {
	t.Setenv("TRANSFERD_NETSAPIENS_BASE_URL", "https://ns:TopSecretPw@pbx.example/ns-api/v2")
	t.Setenv("TRANSFERD_BANDWIDTH_BASE_URL", "https://bw:TopSecretPw@voice.example/api/v1")
	t.Setenv("TRANSFERD_BANDWIDTH_USER_ID", "u-1")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("config", cfg).Msg("starting")
	if strings.Contains(buf.String(), "TopSecretPw") || !strings.Contains(buf.String(), "pbx.example/ns-api/v2") ||
		!strings.Contains(buf.String(), "voice.example/api/v1") {
		t.Errorf("the configuration log shows the provider URLs as: %s", buf.String())
	}
}

// TestZeroDurationsThatMeantADefaultAreRefused: a setting that the
// component behind it reads as "use my default" when it is 0 or less is
// refused at start, rather than logged as 0s and run as 24h or 10s.
func TestZeroDurationsThatMeantADefaultAreRefused(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"TRANSFERD_WEBHOOK_MAX_AGE", "0"},
		{"TRANSFERD_WEBHOOK_MAX_AGE", "-1h"},
		{"TRANSFERD_BANDWIDTH_MAX_RATE_LIMIT_WAIT", "0"},
		{"TRANSFERD_BANDWIDTH_MAX_RATE_LIMIT_WAIT", "-1s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("validate = %v, want %s refused by name", err, tc.name)
			}
		})
	}
}

// TestLogLevelIsOneOfTheDocumented: TRANSFERD_LOG_LEVEL is debug, info,
// warn or error, in any case. zerolog's parser also takes disabled,
// fatal, panic and numbers, with which transferd started and logged
// nothing at all, its errors and "not ready" lines included.
func TestLogLevelIsOneOfTheDocumented(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"debug", true}, {"info", true}, {"warn", true}, {"error", true}, {"INFO", true}, {"Warn", true},
		{"disabled", false}, {"fatal", false}, {"panic", false}, {"5", false}, {"-1", false}, {"trace", false}, {"", false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("TRANSFERD_LOG_LEVEL", tc.value)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if refused := err != nil && strings.Contains(err.Error(), "TRANSFERD_LOG_LEVEL"); refused == tc.ok {
				t.Errorf("TRANSFERD_LOG_LEVEL=%q: validate = %v, want refused %v", tc.value, err, !tc.ok)
			}
		})
	}
}

// TestEmptyListenAddrIsRefused: TRANSFERD_LISTEN_ADDR set but empty (a
// template's missing value) is refused by name. net.Listen reads "" as
// any free port on every interface: the API served where nobody looks,
// while the probes of a separate admin listener said all was well.
func TestEmptyListenAddrIsRefused(t *testing.T) {
	t.Setenv("TRANSFERD_LISTEN_ADDR", "")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "TRANSFERD_LISTEN_ADDR") {
		t.Errorf("validate = %v, want TRANSFERD_LISTEN_ADDR refused by name", err)
	}
}

// TestOnlyPrefixedVariablesAreRead: transferd reads TRANSFERD_* variables
// only. Given a prefix, envconfig falls back to a tag's bare name when the
// prefixed variable is unset, so DATABASE_URL, AUTH, API_KEYS or
// LOG_LEVEL, set in the environment for something else, were read as
// transferd's: another program's database became the store, AUTH=none
// opened the API.
func TestOnlyPrefixedVariablesAreRead(t *testing.T) {
	want, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("envconfig")
		if !strings.HasPrefix(tag, "TRANSFERD_") {
			// Read without a prefix, it would be read from a bare name.
			t.Errorf("field %s is not tagged with its TRANSFERD_ variable", f.Name)
			continue
		}
		name := strings.TrimPrefix(tag, "TRANSFERD_")
		if _, set := os.LookupEnv("TRANSFERD_" + name); set {
			t.Skipf("TRANSFERD_%s is set in this environment", name)
		}
		// A value of the field's type, other than its default.
		v := "unprefixed"
		switch f.Type.Kind() {
		case reflect.Int64: // time.Duration
			v = "1s"
		case reflect.Int, reflect.Float64:
			v = "7"
		case reflect.Bool:
			v = "false"
		case reflect.Slice:
			v = "10.0.0.0/8"
		}
		t.Setenv(name, v)
	}
	got, err := loadConfig()
	if err != nil {
		t.Fatalf("unprefixed variables were read: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		for i := range typ.NumField() {
			if g, w := reflect.ValueOf(got).Field(i).Interface(), reflect.ValueOf(want).Field(i).Interface(); !reflect.DeepEqual(g, w) {
				t.Errorf("%s was read from %s: %v, not its default %v", typ.Field(i).Tag.Get("envconfig"), strings.TrimPrefix(typ.Field(i).Tag.Get("envconfig"), "TRANSFERD_"), g, w)
			}
		}
	}
}

// TestClientCertificatesNeedACallbackListener: with
// TRANSFERD_TLS_CLIENT_CA_FILE the API listener requires a client
// certificate, which no provider presents; with TRANSFERD_PUBLIC_URL and
// no TRANSFERD_CALLBACK_ADDR the provider callbacks were served there, so
// every callback (Bandwidth's call events, NetSapiens' subscription
// posts) failed its TLS handshake, unseen by transferd. The start is
// refused, naming the setting that separates them.
func TestClientCertificatesNeedACallbackListener(t *testing.T) {
	for _, tc := range []struct {
		callbackAddr string
		refused      bool
	}{{"", true}, {":8082", false}} {
		t.Run("TRANSFERD_CALLBACK_ADDR="+tc.callbackAddr, func(t *testing.T) {
			t.Setenv("TRANSFERD_PUBLIC_URL", "https://transferd.example.com")
			t.Setenv("TRANSFERD_CALLBACK_SECRET", strings.Repeat("s", 32))
			t.Setenv("TRANSFERD_TLS_CERT_FILE", "cert.pem")
			t.Setenv("TRANSFERD_TLS_KEY_FILE", "key.pem")
			t.Setenv("TRANSFERD_TLS_CLIENT_CA_FILE", "ca.pem")
			t.Setenv("TRANSFERD_CALLBACK_ADDR", tc.callbackAddr)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if refused := err != nil && strings.Contains(err.Error(), "TRANSFERD_CALLBACK_ADDR"); refused != tc.refused {
				t.Errorf("validate = %v, want TRANSFERD_CALLBACK_ADDR refused %v", err, tc.refused)
			}
		})
	}
}

// TestMissingTLSFilesNameTheirVariables: a certificate or key that
// cannot be loaded stops the start with an error naming the variables
// that give them, as every other configuration error does; it named the
// files only.
func TestMissingTLSFilesNameTheirVariables(t *testing.T) {
	dir := t.TempDir()
	cfg := config{TLSCertFile: dir + "/cert.pem", TLSKeyFile: dir + "/key.pem"}
	_, _, err := tlsConfigs(&cfg, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "TRANSFERD_TLS_CERT_FILE") || !strings.Contains(err.Error(), "TRANSFERD_TLS_KEY_FILE") {
		t.Errorf("err = %v, want it to name TRANSFERD_TLS_CERT_FILE and TRANSFERD_TLS_KEY_FILE", err)
	}
}
