package natsrepl

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a publisher's or a follower's, labelled with the corpus.
type metrics struct {
	version     prometheus.Gauge // the version published (writer) or applied (replica)
	seen        prometheus.Gauge // a replica: the newest version it has seen announced
	lagVersions prometheus.Gauge
	lagSeconds  prometheus.Gauge
	bytes       prometheus.Counter
	errors      prometheus.Counter
	contact     prometheus.Gauge // when NATS last answered
	ready       prometheus.Gauge
}

func newMetrics(o *Options, writer bool) *metrics {
	labels := prometheus.Labels{"corpus": o.corpusName()}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		contact: g("breachd_replication_last_contact_timestamp_seconds", "When NATS last answered this daemon's replication (Unix time)."),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "breachd_replication_errors_total", ConstLabels: labels,
			Help: "Failed attempts to publish or follow the corpus (each is retried)."}),
	}
	cs := []prometheus.Collector{m.contact, m.errors}
	if writer {
		m.version = g("breachd_replication_published_version", "The corpus version the writer last published.")
		m.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "breachd_replication_published_bytes_total", ConstLabels: labels,
			Help: "Bytes of snapshots and deltas published."})
		cs = append(cs, m.version, m.bytes)
	} else {
		m.version = g("breachd_replication_applied_version", "The corpus version this replica serves.")
		m.seen = g("breachd_replication_seen_version", "The newest corpus version this replica has seen published.")
		m.lagVersions = g("breachd_replication_lag_versions", "Corpus versions this replica is behind the newest it has seen.")
		m.lagSeconds = g("breachd_replication_lag_seconds", "How long this replica has been behind the newest version it has seen (0: current).")
		m.ready = g("breachd_replication_ready", "1 while this replica says it serves (health SERVING), 0 while it is behind, out of touch or resyncing.")
		m.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "breachd_replication_applied_bytes_total", ConstLabels: labels,
			Help: "Bytes of snapshots and deltas downloaded and applied."})
		cs = append(cs, m.version, m.seen, m.lagVersions, m.lagSeconds, m.ready, m.bytes)
	}
	if o.Registerer != nil {
		for _, c := range cs {
			if err := o.Registerer.Register(c); err != nil {
				o.Logger.Warn("replication metrics not registered", "err", err)
			}
		}
	}
	return m
}

func (m *metrics) touched() { m.contact.Set(float64(time.Now().UnixNano()) / 1e9) }
