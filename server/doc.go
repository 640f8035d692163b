// Package server implements breachd's gRPC services over the corpus: the
// ExposureService that answers lookups and the AdminService that imports
// breaches into a running daemon. It also assembles the *grpc.Server with the
// daemon's interceptors, limits, health and reflection. Requests are validated
// in validate.go and every error leaves through toStatus in errors.go.
package server
