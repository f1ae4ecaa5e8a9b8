package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	started      *prometheus.CounterVec
	finished     *prometheus.CounterVec
	stateSeconds *prometheus.HistogramVec
	stepSeconds  *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	onHold       *prometheus.GaugeVec
	holdSeconds  *prometheus.HistogramVec
	unverified   *prometheus.CounterVec
	cleanups     *prometheus.GaugeVec
	undriven     *prometheus.GaugeVec
	saveFailures prometheus.Counter
	reads        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		started: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_transfers_started_total",
			Help: "Transfers accepted, by provider.",
		}, []string{"provider"}),
		finished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_transfers_total",
			Help: "Transfers that reached a terminal state, by provider, outcome (terminal state) and reason.",
		}, []string{"provider", "outcome", "reason"}),
		stateSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_transfer_state_duration_seconds",
			Help:    "Time a transfer spent in a state before its next transition.",
			Buckets: []float64{.005, .025, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"provider", "state"}),
		stepSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_transfer_step_duration_seconds",
			Help:    "Duration of a provider step of a transfer, by step and result.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "step", "result"}),
		inFlight: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_transfers_in_flight",
			Help: "Open transfers this replica drives: running, or terminal with a cleanup obligation.",
		}, []string{"provider"}),
		onHold: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_callers_on_hold",
			Help: "Callers of this replica's transfers that the provider's latest reading shows held.",
		}, []string{"provider"}),
		holdSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_caller_hold_duration_seconds",
			Help:    "Time from holding a caller to the end of the transfer.",
			Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"provider"}),
		unverified: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_outcomes_unverified_total",
			Help: "Transfers that ended with an outcome the provider had not confirmed (a cleanup obligation remained).",
		}, []string{"provider"}),
		cleanups: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_cleanups_pending",
			Help: "Terminal transfers of this replica whose caller is not confirmed safe: an unverified outcome whose cleanup obligation is still open (a tombstone, whose outcome was verified, counts in transferd_transfers_in_flight only).",
		}, []string{"provider"}),
		undriven: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_transfers_undriven",
			Help: "Open transfers this replica owns and cannot drive, because their tenant has no account of their provider here, as its last look for orphans found them. Their callers may be on hold.",
		}, []string{"provider"}),
		saveFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "transferd_store_save_failures_total",
			Help: "Failed writes of transfers and heartbeats to the store (version conflicts excluded).",
		}),
		reads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_provider_reads_total",
			Help: "Shared watcher readings of a provider view, by result.",
		}, []string{"provider", "result"}),
	}
}
