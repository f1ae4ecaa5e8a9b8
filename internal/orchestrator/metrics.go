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
			Help: "Transfers being driven by this process.",
		}, []string{"provider"}),
		onHold: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_callers_on_hold",
			Help: "Callers this process currently holds.",
		}, []string{"provider"}),
	}
}
