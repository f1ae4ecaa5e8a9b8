package main

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/transferd/transferd/internal/api"
)

// configInfo returns the one series of transferd_config_info that a
// replica with cfg exports, as its labels in the text format.
func configInfo(t *testing.T, cfg config) string {
	t.Helper()
	signer, err := callbackSigner(&cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	registerConfigInfo(reg, &cfg, signer)
	if n := testutil.CollectAndCount(reg, "transferd_config_info"); n != 1 {
		t.Fatalf("%d series of transferd_config_info, want 1", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := fams[0].GetMetric()[0]
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("transferd_config_info = %v, want 1", m.GetGauge().GetValue())
	}
	var labels []string
	for _, l := range m.GetLabel() {
		labels = append(labels, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(labels, ",")
}

// Replicas that share their settings export the same labels; a replica
// with another callback secret, no public URL or another join hostname
// exports others, which the TransferdReplicasConfigDiffer rule counts. The
// secret itself is never a label.
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
