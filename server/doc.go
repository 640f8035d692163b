// Package server is breachd's gRPC adapter: the ExposureService that answers
// lookups and the AdminService that imports breaches into a running daemon,
// each a thin layer over the use cases of package service. It decodes the
// wire form (validate.go), turns every error into a status through one table
// (errors.go), and offers the pieces the caller assembles a *grpc.Server
// from: Limits (message sizes, streams, keepalive), the recovery and logging
// Interceptors, Register and Shutdown. It never imports package store.
package server
