package server

import (
	"errors"
	"fmt"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// Decoding of the wire form. Rules that hold whatever the transport live in
// package service and breachd; what is checked here is only the shape of the
// protobuf messages, and errors name the message field.

func digestFromCheck(req *breachdv1.CheckRequest) (breachd.Digest, error) {
	d, err := breachd.DigestFromBytes(req.GetEmailSha256())
	if err != nil {
		return d, breachd.Errorf(breachd.ErrInvalidArgument, "CheckRequest.email_sha256: got %d bytes, want %d (the SHA-256 of the canonical email)",
			len(req.GetEmailSha256()), breachd.DigestSize)
	}
	return d, nil
}

// inField prefixes an invalid-argument error of the use cases with the
// message field it came from ("CheckStreamRequest.email_sha256: invalid
// batch: ..."), keeping its kind. Other errors pass unchanged.
func inField(field string, err error) error {
	if !errors.Is(err, breachd.ErrInvalidArgument) {
		return err
	}
	return fmt.Errorf("%s: %w", field, err)
}

// inMessage prefixes an invalid-argument error of the use cases that names
// its own field ("page_size: ...") with the request message
// ("ListBreachesRequest.page_size: ..."). Other errors pass unchanged.
func inMessage(msg string, err error) error {
	if !errors.Is(err, breachd.ErrInvalidArgument) {
		return err
	}
	return fmt.Errorf("%s.%w", msg, err)
}
