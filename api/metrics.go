package api

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

type metrics struct {
	issued     *prometheus.CounterVec // by kind: workload, agent
	itemErrors *prometheus.CounterVec // per-item mint failures by code
	denied     *prometheus.CounterVec // refused at authn/authz, by method
	errors     *prometheus.CounterVec // failed calls by method and code
	latency    *prometheus.HistogramVec
	overloaded prometheus.Counter
	queue      prometheus.Gauge

	attestations *prometheus.CounterVec // node attestations by attestor and outcome (nodeattest.go)

	connRefused prometheus.Counter // over MaxPendingPerSource
	pending     prometheus.Gauge   // accepted, TLS handshake not done
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_svids_issued_total", Help: "X509-SVIDs issued and recorded (kind workload_replayed: a retry answered with the SVID already committed for its idempotency key).",
		}, []string{"kind"}),
		itemErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_mint_item_errors_total", Help: "Batch items refused or failed, by gRPC code.",
		}, []string{"code"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_requests_denied_total", Help: "Calls refused by authentication or authorization.",
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_request_errors_total", Help: "Calls that returned an error, by method and code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tier0_request_seconds",
			Help:    "Time to serve a call, including journal commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_overload_rejections_total", Help: "Mint calls refused with ResourceExhausted because the queue was full.",
		}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_admission_queue", Help: "Mint calls waiting for a slot.",
		}),
		connRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tier0_api_connections_refused_total",
			Help: "API connections closed at accept because their source IP already had MaxPendingPerSource connections not through the TLS handshake.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tier0_api_handshakes_pending", Help: "API connections accepted whose TLS handshake has not ended.",
		}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tier0_node_attestations_total",
			Help: "Node attestations (AttestAgent) by attestor and outcome: allowed, denied (PermissionDenied), invalid (InvalidArgument), unavailable, error.",
		}, []string{"attestor", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.issued, m.itemErrors, m.denied, m.errors, m.latency, m.overloaded, m.queue, m.connRefused, m.pending, m.attestations)
	}
	// The series the alert rules use exist from the start with zero values
	// (deploy/prometheus), so rates and ratios work before the first event.
	for _, kind := range []string{"workload", "workload_replayed", "agent", "jwt"} {
		m.issued.WithLabelValues(kind)
	}
	for _, c := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted, codes.Internal, codes.Unavailable, codes.DeadlineExceeded} {
		m.itemErrors.WithLabelValues(c.String())
	}
	return m
}
