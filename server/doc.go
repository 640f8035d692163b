// Package server is breachd's gRPC adapter: the ExposureService that answers
// lookups, the PasswordService, and the AdminService that imports, deletes
// and corrects breaches and password releases in a running daemon (one
// streamed-import protocol for every kind: import.go), each a thin layer over
// the use cases of package service. It decodes the wire form (validate.go),
// turns every error into a status through one table (errors.go), and offers
// the pieces package daemon assembles a *grpc.Server from: TransportLimits
// (message sizes, streams, keepalive), the recovery and logging
// Interceptors, the Guard (credentials, then auth.Policy's rule for the
// method's use case, then quota), Register and Shutdown. It never imports
// package store.
package server
