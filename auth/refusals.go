package auth

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Refusals count the calls refused for their credential or their quota, on
// every face of the daemon (gRPC and HTTP), so that one metric tells an
// operator about a flood of bad keys or a scraper over its bucket whichever
// face it came through.
type Refusals struct {
	auth  *prometheus.CounterVec // by reason and principal
	quota *prometheus.CounterVec // by principal
}

// NewRefusals returns the counters, registered with reg (nil: not
// registered).
func NewRefusals(reg prometheus.Registerer) (*Refusals, error) {
	r := &Refusals{
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breachd_auth_failures_total",
			Help: "Calls and requests refused as unauthenticated or without the scope they need, by reason and principal (\"-\" when unknown).",
		}, []string{"reason", "principal"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breachd_quota_refusals_total",
			Help: "Calls, requests or stream batches refused because a quota or stream cap was used up, by principal (\"-\": a source address's bucket).",
		}, []string{"principal"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.auth, r.quota} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Unauthorized counts a refusal for a credential: reason is
// "unauthenticated", "permission_denied" or "revoked"; principal "-" when
// the caller is unknown.
func (r *Refusals) Unauthorized(reason, principal string) {
	r.auth.WithLabelValues(reason, principal).Inc()
}

// OverQuota counts a refusal for a quota.
func (r *Refusals) OverQuota(principal string) { r.quota.WithLabelValues(principal).Inc() }
