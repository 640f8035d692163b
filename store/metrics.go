package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics registers the corpus's gauges on reg. They read the live
// state when scraped: nothing is updated on the lookup path for them.
func (s *Store) registerMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("breachd_corpus_accounts", "Distinct account digests in committed breaches.", func() float64 { return float64(s.keys.Load()) }),
		gauge("breachd_corpus_breaches", "Breaches in the catalogue.", func() float64 { return float64(len(s.cat.Load().sorted)) }),
		gauge("breachd_corpus_version", "The corpus version: it grows by one with every committed import.", func() float64 { return float64(s.cat.Load().version) }),
		gauge("breachd_bloom_filter_size_bytes", "Size of the Bloom filter's bit set.", func() float64 { return float64(s.filter.Load().blocks * blockBits / 8) }),
		gauge("breachd_bloom_filter_capacity_keys", "Keys the Bloom filter was sized for.", func() float64 { return float64(s.filter.Load().cap) }),
		gauge("breachd_bloom_filter_estimated_fpr", "The Bloom filter's model false-positive rate at its current number of keys.", func() float64 {
			f := s.filter.Load()
			return blockedFPR(f.blocks, f.k, s.keys.Load())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "breachd_bloom_false_positives_total",
			Help: "Lookups the Bloom filter passed to Badger for a digest that is not stored."}, func() float64 { return float64(s.falsePositives.Load()) }),
		gauge("breachd_import_running", "1 while an import is running, else 0.", func() float64 {
			if s.Importing() {
				return 1
			}
			return 0
		}),
		gauge("breachd_import_received_digests", "Digests the running import has received so far (0 when none runs).", func() float64 {
			return float64(s.importReceived.Load())
		}),
		gauge("breachd_index_current", "1 while lookups read the lookup index, 0 while they confirm in Badger (until its rebuild after an import).", func() float64 {
			if v := s.view.Load(); v != nil && v.cat == s.cat.Load() {
				return 1
			}
			return 0
		}),
		s.imports,
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
