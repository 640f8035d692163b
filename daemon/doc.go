// Package daemon assembles a whole breachd from a Config: the gRPC server
// with its interceptors in their fixed order, TLS, identities and quotas,
// the metrics registry, the corpora (opened after the listeners, so that
// health says NOT_SERVING meanwhile), the HTTP face, and replication on
// NATS. It is the one composition root: cmd/breachd runs it, and every
// end-to-end test starts it, as etcd's embed and wtf's Main are used.
package daemon
