package main

import (
	"cmp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/providers/netsapiens"
)

// registerConfigInfo exports transferd_config_info and
// transferd_callback_secret_info. The first, always 1, is labelled with
// the settings every replica of a deployment must share, so that a
// Prometheus rule can see replicas that disagree (a rolling change that
// stalled, a Secret edited for one pod). Each disagreement breaks something
// only after a takeover, or only for the events that land on the other
// replica: a survivor signs tokens another did not, and cannot know a dead
// replica's Bandwidth legs by the token in their callbackUrl; one without
// a public URL looks for legs that one with it sent otherwise; a NetSapiens
// join's second form names the core the sending replica names second.
// callback_secret is the secret's ID (a keyed digest, never the secret),
// or "none" when none is configured: each process then signs with a
// random one of its own, and nothing is posted to it outside demo mode.
// callback_secret_accepted is the ID of TRANSFERD_CALLBACK_SECRET_ACCEPTED,
// or "none": replicas may differ there, and in callback_secret while a
// rotation rolls out, as long as each accepts what the others sign (the
// README's rotation), which the alert cannot see; it compares the signing
// secrets only.
func registerConfigInfo(reg prometheus.Registerer, cfg *config, signer *api.CallbackSigner) {
	secret, accepted := "none", "none"
	if cfg.CallbackSecret != "" {
		secret = signer.ID()
	}
	if ids := signer.AcceptedIDs(); len(ids) > 0 {
		accepted = strings.Join(ids, ",")
	}
	callbacks := "off"
	if cfg.PublicURL != "" {
		callbacks = "on"
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "transferd_config_info",
		Help: "Always 1; its labels are settings every replica must share: the callback secret's ID (never the secret), " +
			"whether providers post callbacks (TRANSFERD_PUBLIC_URL set), and the NetSapiens join's first hostname; " +
			"and the ID of the callback secret accepted during a rotation.",
	}, []string{"callback_secret", "callbacks", "netsapiens_join_hostname", "callback_secret_accepted"})
	g.WithLabelValues(secret, callbacks, cmp.Or(cfg.NetSapiensJoinHost, netsapiens.JoinHostnameCaller), accepted).Set(1)
	reg.MustRegister(g)

	// transferd_callback_secret_info has a series for each callback secret
	// this replica knows, by ID, and whether it signs with it or only
	// accepts it: a rule can then find a secret some replica signs with
	// that another does not know, the only disagreement on secrets that
	// breaks anything (a rotation's steps never make one). Without a
	// configured secret there is none: each process signs with a random
	// one, and nothing is posted to it outside demo mode.
	known := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "transferd_callback_secret_info",
		Help: "Always 1; one series for each callback secret this replica knows, by its ID (never the secret): " +
			"use is signs for TRANSFERD_CALLBACK_SECRET, accepts for TRANSFERD_CALLBACK_SECRET_ACCEPTED.",
	}, []string{"id", "use"})
	if cfg.CallbackSecret != "" {
		known.WithLabelValues(signer.ID(), "signs").Set(1)
		for _, id := range signer.AcceptedIDs() {
			known.WithLabelValues(id, "accepts").Set(1)
		}
	}
	reg.MustRegister(known)
}
