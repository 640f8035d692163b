package server

import (
	"context"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/breachd/breachd"
	breachdv1 "github.com/breachd/breachd/proto/breachd/v1"
	"github.com/breachd/breachd/service"
)

// GetPrivateLookupInfo returns the prefix length private checks use now.
func (s *ExposureServer) GetPrivateLookupInfo(ctx context.Context, _ *breachdv1.GetPrivateLookupInfoRequest) (*breachdv1.PrivateLookupInfo, error) {
	info, err := s.svc.PrivateInfo(ctx)
	if err != nil {
		return nil, toStatus(s.log, "GetPrivateLookupInfo", err)
	}
	return &breachdv1.PrivateLookupInfo{PrefixBits: uint32(info.PrefixBits), BucketMin: uint32(info.BucketMin),
		SmallestBucket: info.SmallestBucket, Accounts: info.Accounts, CorpusVersion: info.CorpusVersion,
		Suite: breachd.PrivateSuite, ValueSize: breachd.PrivateValueSize}, nil
}

// CheckPrivate answers a private check, padded to its size class.
func (s *ExposureServer) CheckPrivate(ctx context.Context, req *breachdv1.CheckPrivateRequest) (*breachdv1.CheckPrivateResponse, error) {
	q := breachd.PrivateQuery{Prefix: req.GetPrefix(), PrefixBits: int(min(req.GetPrefixBits(), 1<<16)), Blinded: req.GetBlindedElement()}
	a, err := s.svc.CheckPrivate(ctx, q)
	if err == nil {
		err = service.AtLeast(a.CorpusVersion, req.GetMinCorpusVersion())
	}
	if err != nil {
		return nil, toStatus(s.log, "CheckPrivate", err)
	}
	resp := &breachdv1.CheckPrivateResponse{EvaluatedElement: a.Evaluated, PrefixBits: uint32(a.PrefixBits), CorpusVersion: a.CorpusVersion}
	bs, index := a.Breaches()
	for _, b := range bs {
		resp.Breaches = append(resp.Breaches, s.summary(b))
	}
	resp.Entries = make([]*breachdv1.PrivateEntry, len(a.Entries))
	for i, e := range a.Entries {
		pe := &breachdv1.PrivateEntry{Value: e.Value[:], Breaches: make([]uint32, len(e.Breaches))}
		for j, b := range e.Breaches {
			pe.Breaches[j] = index[b]
		}
		resp.Entries[i] = pe
	}
	pad(resp)
	return resp, nil
}

// pad sets resp's padding so that its encoding is exactly its size class
// (breachd.PaddedSize). The padding field is always present: its tag (one
// byte), its length and its bytes.
func pad(resp *breachdv1.CheckPrivateResponse) {
	resp.Padding = nil
	n := proto.Size(resp)
	for class := breachd.PaddedSize(n + 2); ; class <<= 1 {
		for l := 1; l <= 3; l++ {
			p := class - n - 1 - l
			if p >= 1 && protowire.SizeVarint(uint64(p)) == l {
				resp.Padding = make([]byte, p)
				return
			}
		}
	}
}
