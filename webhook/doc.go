// Package webhook delivers exposure events from the outbox to HTTP
// endpoints as Standard Webhooks (https://www.standardwebhooks.com/):
// each event POSTed as its CloudEvents JSON with webhook-id,
// webhook-timestamp and webhook-signature (HMAC-SHA256 over
// id.timestamp.body), at least once, in order, each endpoint at its own
// pace, retried with exponential backoff for a configurable period and
// then dead-lettered. The same delivery loop drains the outbox into any
// Target (natsrepl.EventTarget publishes to NATS JetStream).
package webhook
