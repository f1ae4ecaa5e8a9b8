package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/api"
)

// configInfo returns the one series of transferd_config_info that a
// replica with cfg exports, as its labels in the text format.
func configInfo(t *testing.T, cfg config) string {
	t.Helper()
	series := infoSeries(t, cfg, "transferd_config_info")
	if len(series) != 1 {
		t.Fatalf("%d series of transferd_config_info, want 1", len(series))
	}
	return series[0]
}

// infoSeries returns the series of the info metric name that a replica
// with cfg exports, each as its labels in the text format; each must be 1.
func infoSeries(t *testing.T, cfg config, name string) []string {
	t.Helper()
	signer, err := callbackSigner(&cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	registerConfigInfo(reg, &cfg, signer)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() != 1 {
				t.Errorf("%s = %v, want 1", name, m.GetGauge().GetValue())
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			series = append(series, strings.Join(labels, ","))
		}
	}
	return series
}

// Replicas that share their settings export the same labels; a replica
// with another callback secret, no public URL or another join hostname
// exports others. The TransferdReplicasConfigDiffer rule counts the
// last two; TransferdCallbackSecretNotShared compares the secrets, from
// transferd_callback_secret_info. The secret itself is never a label.
func TestConfigInfoTellsReplicasThatDisagree(t *testing.T) {
	const secret = "replicas-share-this-callback-secret-0123456789"
	base := config{CallbackSecret: secret, PublicURL: "https://r0.example.com", NetSapiensJoinHost: "caller"}
	same := base
	same.PublicURL = "https://r1.example.com" // a public URL of its own is fine
	a, b := configInfo(t, base), configInfo(t, same)
	if a != b {
		t.Errorf("replicas that share their settings: %s and %s", a, b)
	}
	if strings.Contains(a, secret) || strings.Contains(a, secret[:12]) {
		t.Errorf("the labels carry the secret: %s", a)
	}
	signer, err := api.NewCallbackSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if want := "callback_secret=" + signer.ID() + ",callback_secret_accepted=none,callbacks=on,netsapiens_join_hostname=caller"; a != want {
		t.Errorf("labels %s, want %s", a, want)
	}
	for name, edit := range map[string]func(*config){
		"another secret":        func(c *config) { c.CallbackSecret = "another-callback-secret-0123456789abcdef" },
		"no public URL":         func(c *config) { c.PublicURL = "" },
		"another join hostname": func(c *config) { c.NetSapiensJoinHost = "consult" },
	} {
		other := base
		edit(&other)
		if got := configInfo(t, other); got == a {
			t.Errorf("%s: the same labels %s", name, got)
		}
	}
	// Without a secret each process signs with a random one, which no
	// label tells apart.
	none := config{NetSapiensJoinHost: "caller"}
	if got, want := configInfo(t, none), "callback_secret=none,callback_secret_accepted=none,callbacks=off,netsapiens_join_hostname=caller"; got != want {
		t.Errorf("no callback secret: %s, want %s", got, want)
	}
	if configInfo(t, none) != configInfo(t, none) {
		t.Error("two processes without a secret export different labels")
	}
}

// During a rotation of the callback secret the accepted secret is shown
// by its ID, never itself, beside the signing secret's.
func TestConfigInfoShowsTheAcceptedSecret(t *testing.T) {
	const secret, next = "replicas-share-this-callback-secret-0123456789", "the-next-callback-secret-of-the-rotation-0123"
	rotating := config{CallbackSecret: secret, CallbackAccept: next, NetSapiensJoinHost: "caller"}
	got := configInfo(t, rotating)
	nextSigner, err := api.NewCallbackSigner([]byte(next))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := api.NewCallbackSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if want := "callback_secret=" + signer.ID() + ",callback_secret_accepted=" + nextSigner.ID() +
		",callbacks=off,netsapiens_join_hostname=caller"; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	if strings.Contains(got, next) || strings.Contains(got, next[:12]) {
		t.Errorf("the labels carry the accepted secret: %s", got)
	}
}

// transferd_callback_secret_info names every callback secret a replica
// knows, by its ID: the one it signs with and the one it accepts during a
// rotation; none without a configured secret (a process then signs with a
// random one of its own).
func TestCallbackSecretInfoNamesTheSecretsAReplicaKnows(t *testing.T) {
	const secret, next = "replicas-share-this-callback-secret-0123456789", "the-next-callback-secret-of-the-rotation-0123"
	id := func(s string) string {
		signer, err := api.NewCallbackSigner([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return signer.ID()
	}
	for _, c := range []struct {
		name string
		cfg  config
		want []string
	}{
		{"a secret", config{CallbackSecret: secret}, []string{"id=" + id(secret) + ",use=signs"}},
		{"a rotation", config{CallbackSecret: secret, CallbackAccept: next},
			[]string{"id=" + id(secret) + ",use=signs", "id=" + id(next) + ",use=accepts"}},
		{"no secret", config{}, nil},
	} {
		got := infoSeries(t, c.cfg, "transferd_callback_secret_info")
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: series %q, want %q", c.name, got, c.want)
		}
		for _, s := range got {
			if strings.Contains(s, secret[:12]) || strings.Contains(s, next[:12]) {
				t.Errorf("%s: a label carries a secret: %s", c.name, s)
			}
		}
	}
}
