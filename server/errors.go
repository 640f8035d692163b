package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/store"
)

// toStatus is the one place where errors become gRPC statuses. Errors the
// caller can act on keep their message; anything unexpected is logged and
// returned as a generic Internal error.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status, e.g. from validation
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, store.ErrUnknownBreach):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, breachd.ErrInvalidBreach), errors.Is(err, breachd.ErrInvalidDigest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "the server is shutting down; retry against another instance or later")
	case errors.Is(err, store.ErrNoSpace):
		log.Error("disk full", "method", method)
		return status.Error(codes.ResourceExhausted, "the server's disk is full; nothing was committed, free space and retry")
	case errors.Is(err, store.ErrImportDone):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
