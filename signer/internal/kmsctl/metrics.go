package kmsctl

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the signer metrics shared by every backend. One Metrics value
// may be shared by many signers; each labels its series with its backend.
type Metrics struct {
	SignSeconds *prometheus.HistogramVec // labels: backend
	Errors      *prometheus.CounterVec   // labels: backend, kind
	Retries     *prometheus.CounterVec   // labels: backend
	CircuitOpen *prometheus.GaugeVec     // labels: backend
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered). When reg already holds them (a second signer in the same
// process), the registered collectors are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		SignSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tier0_signer_sign_seconds",
			Help:    "Latency of signer Sign calls, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_signer_errors_total",
			Help: "Failed signer Sign calls by backend and kind (throttled, unavailable, circuit_open, timeout, checksum, closed, canceled, other).",
		}, []string{"backend", "kind"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_signer_retries_total",
			Help: "KMS Sign attempts retried after a throttling or availability error.",
		}, []string{"backend"}),
		CircuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tier0_signer_circuit_open",
			Help: "1 while the KMS circuit breaker is open (signs fail fast), else 0.",
		}, []string{"backend"}),
	}
	if reg == nil {
		return m
	}
	m.SignSeconds = register(reg, m.SignSeconds)
	m.Errors = register(reg, m.Errors)
	m.Retries = register(reg, m.Retries)
	m.CircuitOpen = register(reg, m.CircuitOpen)
	return m
}

func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		// A conflicting collector of another shape: keep ours unregistered
		// rather than fail signing.
	}
	return c
}
