// Package daemontest starts real daemons (package daemon, the same
// assembly 'breachd serve' runs) on 127.0.0.1:0, with test-sized corpora,
// for the tests and benchmarks of clients, adapters and the store.
package daemontest
