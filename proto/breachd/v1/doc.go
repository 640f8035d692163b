// Package breachdv1 holds the version 1 gRPC API of breachd: breachd.proto and
// the Go code generated from it by `make proto` (committed; never edit it by
// hand, `make proto-check` fails when it drifts).
package breachdv1
