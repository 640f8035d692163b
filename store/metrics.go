package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics registers the corpus's gauges on reg, labelled with its
// kind. They read the live state when scraped: nothing is updated on the
// lookup path for them.
func (c *corpus) registerMetrics(reg prometheus.Registerer) error {
	labels := prometheus.Labels{"kind": c.kind.name}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	cs := []prometheus.Collector{
		gauge("breachd_corpus_accounts", "Distinct keys (account digests, or password hashes) in committed breaches.", func() float64 { return float64(c.keys.Load()) }),
		gauge("breachd_corpus_breaches", "Breaches (or password releases) in the catalogue.", func() float64 { return float64(len(c.cat.Load().sorted)) }),
		gauge("breachd_corpus_version", "The corpus version: it grows by one with every committed change.", func() float64 { return float64(c.cat.Load().version) }),
		gauge("breachd_bloom_filter_size_bytes", "Size of the Bloom filter's bit set.", func() float64 { return float64(c.filter.Load().blocks * blockBits / 8) }),
		gauge("breachd_bloom_filter_capacity_keys", "Keys the Bloom filter was sized for.", func() float64 { return float64(c.filter.Load().cap) }),
		gauge("breachd_bloom_filter_log_bytes", "Size of the log of changed blocks beside the Bloom filter's last whole save (rewritten whole past a quarter of the filter).", func() float64 {
			c.saveMu.Lock()
			defer c.saveMu.Unlock()
			return float64(c.saved.logSize)
		}),
		gauge("breachd_bloom_filter_estimated_fpr", "The Bloom filter's model false-positive rate at its current number of keys (with those of abandoned imports it holds).", c.estimatedFPR),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "breachd_bloom_false_positives_total", ConstLabels: labels,
			Help: "Lookups the Bloom filter passed to Badger for a key that is not stored."}, func() float64 { return float64(c.falsePositives.Load()) }),
		gauge("breachd_import_running", "1 while an import is running, else 0.", func() float64 {
			if c.Importing() {
				return 1
			}
			return 0
		}),
		gauge("breachd_import_received_digests", "Keys the running import has received so far (0 when none runs).", func() float64 {
			return float64(c.importReceived.Load())
		}),
		c.imports,
	}
	if c.index != nil {
		cs = append(cs, gauge("breachd_index_delta_rows", "Rows merged into the lookup index since its file was written (compacted into it once changes pause).", func() float64 {
			return float64(c.indexStats().Delta)
		}))
		cs = append(cs, gauge("breachd_index_current", "1 while lookups read the lookup index, 0 while they confirm in Badger (until its rebuild after an import).", func() float64 {
			if c.indexCurrent() {
				return 1
			}
			return 0
		}))
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
