package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

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
	{breachd.ErrAlreadyExists, codes.AlreadyExists},
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
			if m.code == codes.Unavailable || errors.Is(err, breachd.ErrNoSpace) {
				log.Warn("call refused", "method", method, "code", m.code.String(), "err", err)
			}
			st := status.New(m.code, err.Error()+advice[m.code])
			// A refusal that knows when to retry says so, in the form
			// gRPC clients read (google.rpc.RetryInfo).
			var ra interface{ RetryAfter() time.Duration }
			if errors.As(err, &ra) {
				if d, derr := st.WithDetails(
					&errdetails.RetryInfo{RetryDelay: durationpb.New(ra.RetryAfter())},
					&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Description: err.Error()}}},
				); derr == nil {
					st = d
				}
			}
			return st.Err()
		}
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
