package client

import (
	"context"
	"iter"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
)

// CheckPassword asks how often the password whose hash is h appears in
// the daemon's corpus of h's kind (0: never). Hash the password locally
// (crypto/sha1, or corpus.NTLM) and send only the hash; better still, use
// Range and compare locally, so the daemon never sees the whole hash.
func (c *Client) CheckPassword(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error) {
	var resp *breachdv1.CheckPasswordResponse
	err := c.retry(ctx, "CheckPassword", func() error {
		var err error
		resp, err = c.pw.CheckPassword(ctx, &breachdv1.CheckPasswordRequest{Kind: breachdv1.KindFromDomain(h.Kind), Hash: h.Bytes()})
		return err
	})
	if err != nil {
		return breachd.PasswordExposure{}, err
	}
	return breachd.PasswordExposure{Count: resp.GetCount(), CorpusVersion: resp.GetCorpusVersion()}, nil
}

// PasswordRange returns every hash of kind k under a 20-bit prefix, with
// its count, ascending, and the corpus version.
func (c *Client) PasswordRange(ctx context.Context, k breachd.HashKind, prefix breachd.RangePrefix) ([]breachd.PasswordRecord, uint64, error) {
	var resp *breachdv1.RangeResponse
	err := c.retry(ctx, "Range", func() error {
		var err error
		resp, err = c.pw.Range(ctx, &breachdv1.RangeRequest{Kind: breachdv1.KindFromDomain(k), Prefix: prefix.String()})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	size := k.Size()
	hs, ns := resp.GetHashes(), resp.GetCounts()
	if len(hs) != size*len(ns) {
		return nil, 0, &Error{Op: "Range", err: status.Errorf(codes.Internal, "the daemon sent %d bytes of hashes for %d counts", len(hs), len(ns))}
	}
	out := make([]breachd.PasswordRecord, len(ns))
	for i, n := range ns {
		copy(out[i].Hash[:], hs[i*size:(i+1)*size])
		out[i].Count = n
	}
	return out, resp.GetCorpusVersion(), nil
}

// ImportPasswords streams release rel of kind k to the daemon, which
// commits it, visible all at once, when batches ends without an error. As
// with Import, an error wrapping ErrOutcomeUnknown means the connection
// failed after the commit was sent; importing again is safe.
func (c *Client) ImportPasswords(ctx context.Context, k breachd.HashKind, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
	ctx, cancel := context.WithCancel(ctx) // cancelling drops the daemon's import
	defer cancel()
	stream, err := c.admin.ImportPasswords(ctx)
	if err != nil {
		return breachd.PasswordImportStats{}, &Error{Op: "ImportPasswords", err: err}
	}
	size := k.Size()
	hdr := &breachdv1.PasswordRelease{Kind: breachdv1.KindFromDomain(k), Release: breachdv1.BreachFromDomain(&rel), ExpectedHashes: expected}
	resp, err := sendImport(stream, "ImportPasswords", batches,
		&breachdv1.ImportPasswordsRequest{Part: &breachdv1.ImportPasswordsRequest_Release{Release: hdr}},
		func(chunk []breachd.PasswordRecord) *breachdv1.ImportPasswordsRequest {
			b := &breachdv1.PasswordBatch{Hashes: make([]byte, 0, len(chunk)*size), Counts: make([]uint64, 0, len(chunk))}
			for i := range chunk {
				b.Hashes = append(b.Hashes, chunk[i].Hash[:size]...)
				b.Counts = append(b.Counts, chunk[i].Count)
			}
			return &breachdv1.ImportPasswordsRequest{Part: &breachdv1.ImportPasswordsRequest_Batch{Batch: b}}
		},
		func(c *breachdv1.ImportCommit) *breachdv1.ImportPasswordsRequest {
			return &breachdv1.ImportPasswordsRequest{Part: &breachdv1.ImportPasswordsRequest_Commit{Commit: c}}
		})
	if err != nil {
		return breachd.PasswordImportStats{}, err
	}
	return breachd.PasswordImportStats{Release: resp.GetName(), Kind: k, Received: resp.GetReceived(),
		NewHashes: resp.GetNewHashes(), UpdatedHashes: resp.GetUpdatedHashes(), Version: resp.GetCorpusVersion()}, nil
}
