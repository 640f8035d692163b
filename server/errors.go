package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
)

// codeOf is the one table from breachd's kinds of error to gRPC codes. The
// message of an error of a listed kind is written for the caller and goes
// out as it is; any other error is logged and leaves as a generic Internal.
var codeOf = []struct {
	kind error
	code codes.Code
}{
	{breachd.ErrInvalidArgument, codes.InvalidArgument},
	{breachd.ErrNotFound, codes.NotFound},
	{breachd.ErrUnavailable, codes.Unavailable},
	{breachd.ErrNoSpace, codes.ResourceExhausted},
	{breachd.ErrFailedPrecondition, codes.FailedPrecondition},
	{breachd.ErrUnauthenticated, codes.Unauthenticated},
	{breachd.ErrPermissionDenied, codes.PermissionDenied},
	{breachd.ErrQuotaExceeded, codes.ResourceExhausted},
}

// advice completes the message of kinds whose remedy is the same every time.
var advice = map[codes.Code]string{
	codes.Unavailable: "; retry against another instance or later",
}

// toStatus turns any error a handler meets into a gRPC status error.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status: the transport's own (e.g. a cancelled stream)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	for _, m := range codeOf {
		if errors.Is(err, m.kind) {
			if m.code == codes.ResourceExhausted || m.code == codes.Unavailable {
				log.Warn("call refused", "method", method, "code", m.code.String(), "err", err)
			}
			return status.Error(m.code, err.Error()+advice[m.code])
		}
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
