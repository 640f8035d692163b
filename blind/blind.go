package blind

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"

	"github.com/breachd/breachd"
)

var suite = oprf.SuiteRistretto255

// Request is one private check of one digest, from its blinding to its
// answer. A Request is used once.
type Request struct {
	Query breachd.PrivateQuery
	fin   *oprf.FinalizeData
}

// New blinds d with a fresh random scalar, for a check at prefixBits.
func New(d breachd.Digest, prefixBits int) (*Request, error) {
	fin, req, err := oprf.NewClient(suite).Blind([][]byte{d[:]})
	if err != nil {
		return nil, err
	}
	return newRequest(d, prefixBits, fin, req)
}

// NewWithBlind blinds d with the given scalar (32 bytes, little-endian, as
// RFC 9497 encodes it): for test vectors only; a real check's blind must be
// fresh and random.
func NewWithBlind(d breachd.Digest, prefixBits int, scalar []byte) (*Request, error) {
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(scalar); err != nil {
		return nil, fmt.Errorf("blind scalar: %w", err)
	}
	fin, req, err := oprf.NewClient(suite).DeterministicBlind([][]byte{d[:]}, []oprf.Blind{s})
	if err != nil {
		return nil, err
	}
	return newRequest(d, prefixBits, fin, req)
}

func newRequest(d breachd.Digest, bits int, fin *oprf.FinalizeData, req *oprf.EvaluationRequest) (*Request, error) {
	if bits < 0 || bits > breachd.MaxPrefixBits {
		return nil, fmt.Errorf("prefix of %d bits: want 0 to %d", bits, breachd.MaxPrefixBits)
	}
	b, err := req.Elements[0].MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &Request{Query: breachd.PrivateQuery{Prefix: breachd.PrefixOf(d, bits), PrefixBits: bits, Blinded: b}, fin: fin}, nil
}

// Value unblinds the server's evaluation into the account's value: what
// an answer lists if the account is exposed.
func (r *Request) Value(evaluated []byte) ([breachd.PrivateValueSize]byte, error) {
	var v [breachd.PrivateValueSize]byte
	e := group.Ristretto255.NewElement()
	if err := e.UnmarshalBinary(evaluated); err != nil {
		return v, fmt.Errorf("%w: the evaluated element does not decode: %v", breachd.ErrInvalidPrivateQuery, err)
	}
	out, err := oprf.NewClient(suite).Finalize(r.fin, &oprf.Evaluation{Elements: []oprf.Evaluated{e}})
	if err != nil {
		return v, err
	}
	copy(v[:], out[0])
	return v, nil
}

// Match returns the breaches an answer lists for the account: nil when it
// is not exposed.
func (r *Request) Match(a breachd.PrivateAnswer) ([]*breachd.CatalogEntry, error) {
	v, err := r.Value(a.Evaluated)
	if err != nil {
		return nil, err
	}
	i, ok := slices.BinarySearchFunc(a.Entries, v, func(e breachd.PrivateEntry, v [breachd.PrivateValueSize]byte) int {
		return bytes.Compare(e.Value[:], v[:])
	})
	if !ok {
		return nil, nil
	}
	return a.Entries[i].Breaches, nil
}
