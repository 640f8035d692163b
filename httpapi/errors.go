package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/breachd/breachd"
)

// statusOf is the one table from breachd's kinds of error to HTTP
// statuses. The message of an error of a listed kind is written for the
// caller; any other error is logged and leaves as a generic 500.
var statusOf = []struct {
	kind   error
	status int
}{
	{breachd.ErrInvalidArgument, http.StatusBadRequest},
	{breachd.ErrNotFound, http.StatusNotFound},
	{breachd.ErrUnavailable, http.StatusServiceUnavailable},
	{breachd.ErrNoSpace, http.StatusInsufficientStorage},
	{breachd.ErrStalePrefix, http.StatusConflict}, // before its kind's row
	{breachd.ErrFailedPrecondition, http.StatusServiceUnavailable},
	{breachd.ErrUnauthenticated, http.StatusUnauthorized},
	{breachd.ErrPermissionDenied, http.StatusForbidden},
	{breachd.ErrQuotaExceeded, http.StatusTooManyRequests},
	{breachd.ErrAlreadyExists, http.StatusConflict},
}

// errorBody is upstream's error document.
type errorBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// statusFor maps err to a status and a message for the caller.
func statusFor(log *slog.Logger, route string, err error) (int, string) {
	switch {
	case errors.Is(err, context.Canceled):
		return 499, "request canceled" // the client is gone; nginx's code, for the logs
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "deadline exceeded"
	}
	for _, m := range statusOf {
		if errors.Is(err, m.kind) {
			if m.status >= 500 {
				log.Warn("request refused", "route", route, "status", m.status, "err", err)
			}
			return m.status, err.Error()
		}
	}
	log.Error("internal error", "route", route, "err", err)
	return http.StatusInternalServerError, "internal error"
}

// writeError answers with err's status: a JSON error document, and for a
// quota refusal a retry-after header in whole seconds, as upstream.
func writeError(w http.ResponseWriter, log *slog.Logger, route string, err error) int {
	code, msg, retry := refusal(log, route, err)
	if retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	writeJSON(w, code, errorBody{StatusCode: code, Message: msg})
	return code
}

// refusal is the answer to err: its status, its message and, for a quota
// refusal, the Retry-After value (whole seconds; "" for none).
func refusal(log *slog.Logger, route string, err error) (code int, msg, retry string) {
	code, msg = statusFor(log, route, err)
	var ra interface{ RetryAfter() time.Duration }
	if code == http.StatusTooManyRequests && errors.As(err, &ra) {
		retry = strconv.Itoa(max(1, int(math.Ceil(ra.RetryAfter().Seconds()))))
		msg = "Rate limit is exceeded. Try again in " + retry + " seconds."
	}
	return code, msg, retry
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	code, b := marshalJSON(code, v)
	w.Header().Set("Content-Type", jsonType)
	w.Header().Set("X-Content-Type-Options", "nosniff") // a message may quote the request
	w.WriteHeader(code)
	w.Write(b)
}

const jsonType = "application/json; charset=utf-8"

// marshalJSON is v's JSON, or a 500 error document if it has none.
func marshalJSON(code int, v any) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"statusCode":500,"message":"internal error"}`)
	}
	return code, b
}
