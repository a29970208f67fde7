package health

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier0-ca/tier0/signer/internal/errs"
)

// Metrics are the signer metrics shared by every backend. One Metrics value
// may be shared by many signers; each labels its series with its backend
// (and, for the health gauges, its key).
type Metrics struct {
	SignSeconds *prometheus.HistogramVec // labels: backend
	Errors      *prometheus.CounterVec   // labels: backend, kind
	Retries     *prometheus.CounterVec   // labels: backend
	CircuitOpen *prometheus.GaugeVec     // labels: backend, key
	Up          *prometheus.GaugeVec     // labels: backend, key
}

// ErrorKinds are the values of the kind label of tier0_signer_errors_total.
var ErrorKinds = []string{
	errs.ReasonThrottled, errs.ReasonCircuitOpen, errs.ReasonTimeout, errs.ReasonUnavailable,
	"checksum", "closed", "canceled", "other",
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
			Help: "1 while the signer's circuit breaker is open (signs fail fast while probes run), else 0.",
		}, []string{"backend", "key"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tier0_signer_up",
			Help: "1 while the CA key can sign (health up or degraded), 0 while it is down.",
		}, []string{"backend", "key"}),
	}
	if reg == nil {
		return m
	}
	m.SignSeconds = register(reg, m.SignSeconds)
	m.Errors = register(reg, m.Errors)
	m.Retries = register(reg, m.Retries)
	m.CircuitOpen = register(reg, m.CircuitOpen)
	m.Up = register(reg, m.Up)
	return m
}

// Init makes backend's counter series exist with zero values, so that
// rates and alerts work before the first error.
func (m *Metrics) Init(backend string) {
	m.SignSeconds.WithLabelValues(backend)
	m.Retries.WithLabelValues(backend)
	for _, k := range ErrorKinds {
		m.Errors.WithLabelValues(backend, k)
	}
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
