package service

import (
	"context"

	"github.com/breachd/breachd"
)

// PrivateStore is what a private check needs of the corpus
// (docs/PRIVATE-LOOKUP.md).
type PrivateStore interface {
	PrivateInfo(ctx context.Context) (breachd.PrivateInfo, error)
	PrivateCheck(ctx context.Context, q breachd.PrivateQuery) (breachd.PrivateAnswer, error)
}

// ErrPrivateUnsupported answers a private check on a corpus that cannot
// answer one.
var ErrPrivateUnsupported = breachd.NewError(breachd.ErrFailedPrecondition, "this server's corpus does not answer private checks")

// private returns the corpus as a PrivateStore.
func (s *Service) private() (PrivateStore, error) {
	st, err := s.corpus()
	if err != nil {
		return nil, err
	}
	p, ok := st.(PrivateStore)
	if !ok {
		return nil, ErrPrivateUnsupported
	}
	return p, nil
}

// PrivateInfo returns the prefix length private checks use now.
func (s *Service) PrivateInfo(ctx context.Context) (breachd.PrivateInfo, error) {
	p, err := s.private()
	if err != nil {
		return breachd.PrivateInfo{}, err
	}
	return p.PrivateInfo(ctx)
}

// CheckPrivate answers a private check: the evaluation of the query's
// blinded digest, and every exposed account of its bucket. The corpus
// checks the query (PrivateQuery.Validate) against its prefix length.
func (s *Service) CheckPrivate(ctx context.Context, q breachd.PrivateQuery) (breachd.PrivateAnswer, error) {
	p, err := s.private()
	if err != nil {
		return breachd.PrivateAnswer{}, err
	}
	return p.PrivateCheck(ctx, q)
}
