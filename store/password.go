package store

import (
	"context"
	"fmt"
	"iter"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Passwords is the corpus of one password hash kind (SHA-1 or NTLM): each
// hash with its prevalence count, and nothing else. It is the corpus
// engine (engine.go) over a counted kind, in a directory of its own beside
// the email corpus's (PasswordDir): the same exact answers (the filter only
// says "no"), releases that become visible all at once, a saved filter
// that survives a crash without a rebuild, collection, backups.
//
// A release is imported as a segment, as a breach is: every row it touches
// gains an entry (segment id, count) beside the entries it had, and
// lookups answer the highest count of the committed entries. Until the
// commit the old entries answer; after it all do. So a new release merges
// into the corpus (hashes it lacks keep their count, counts it raises
// rise, and a small list imported beside it never lowers one) with no
// window of wrong answers.
//
// Ranges and the counts the filter lets through read the lookup index
// (index.go, a counted kind's) while it is current, and Badger otherwise.
type Passwords struct {
	corpus
	hashKind breachd.HashKind
}

// PasswordRelease is one imported release of a password corpus.
type PasswordRelease struct {
	breachd.Breach
	// Hashes is how many hashes the release carried.
	Hashes uint64 `json:"Hashes"`
}

// OpenPasswords opens (creating if needed) the password corpus of kind k
// in dir (in a data directory: PasswordDir).
func OpenPasswords(ctx context.Context, dir string, k breachd.HashKind, opts Options) (*Passwords, error) {
	pk := passwordKind(k)
	if pk == nil {
		return nil, breachd.Errorf(breachd.ErrInvalidArgument, "unknown hash kind %d", k)
	}
	p := &Passwords{hashKind: k}
	if err := p.open(ctx, dir, pk, opts); err != nil {
		return nil, err
	}
	return p, nil
}

// Kind returns the corpus's hash kind.
func (p *Passwords) Kind() breachd.HashKind { return p.hashKind }

// Hashes returns how many hashes have a committed count.
func (p *Passwords) Hashes() uint64 { return p.keys.Load() }

// Releases returns the committed releases, ordered by name.
func (p *Passwords) Releases() []*PasswordRelease {
	cat := p.cat.Load()
	out := make([]*PasswordRelease, len(cat.sorted))
	for i, e := range cat.sorted {
		out[i] = &PasswordRelease{Breach: e.Breach, Hashes: uint64(max(e.AccountCount, 0))}
	}
	return out
}

func (p *Passwords) checkHash(h *breachd.PasswordHash) error {
	if h.Kind != p.hashKind {
		return breachd.Errorf(breachd.ErrInvalidArgument, "a %s hash asked of the %s corpus", h.Kind, p.hashKind)
	}
	return nil
}

// Lookup returns the count of hash h (0: not in the corpus) and the
// corpus version. The filter answers most absent hashes alone.
func (p *Passwords) Lookup(ctx context.Context, h breachd.PasswordHash) (breachd.PasswordExposure, error) {
	if err := p.checkHash(&h); err != nil {
		return breachd.PasswordExposure{}, err
	}
	if p.closed.Load() {
		return breachd.PasswordExposure{}, breachd.ErrClosed
	}
	cat := p.cat.Load() // before the filter: see corpus.filter
	fk := p.kind.filterKey(h.Bytes())
	if len(cat.segments) == 0 || !p.filter.Load().test(fk[:]) {
		return breachd.PasswordExposure{CorpusVersion: cat.version}, nil
	}
	// The index answers while it is current for cat, unless it does not
	// hold the count (a first-layout file's too large one).
	if v := p.currentView(cat); v != nil {
		n, ok := v.count(h.Bytes())
		p.index.mu.RUnlock()
		if !ok {
			p.falsePositives.Add(1)
		}
		if n != countUnknown {
			return breachd.PasswordExposure{Count: n, CorpusVersion: cat.version}, nil
		}
	}
	if err := p.acquire(); err != nil {
		return breachd.PasswordExposure{}, err
	}
	defer p.release()
	type read struct {
		n     uint64
		found bool
	}
	r, cat, err := readStable(ctx, &p.corpus, cat, func(txn *badger.Txn, cat *catalog) (r read, err error) {
		r.found, err = p.get(txn, h.Bytes(), func(v []byte) error { r.n = cat.count(v); return nil })
		return r, err
	})
	if err != nil {
		return breachd.PasswordExposure{}, err
	}
	if !r.found {
		p.falsePositives.Add(1)
	}
	return breachd.PasswordExposure{Count: r.n, CorpusVersion: cat.version}, nil
}

// Range calls fn, in ascending order, for every hash whose first 20 bits
// are prefix and whose count is not 0; fn's slice is valid only during
// the call. It returns the corpus version the range was read at.
func (p *Passwords) Range(ctx context.Context, prefix breachd.RangePrefix, fn func(hash []byte, count uint64)) (uint64, error) {
	if prefix >= 1<<20 {
		return 0, breachd.Errorf(breachd.ErrInvalidArgument, "range prefix %d is over 20 bits", prefix)
	}
	if err := p.acquire(); err != nil {
		return 0, err
	}
	defer p.release()
	cat := p.cat.Load()
	if cat.version == 0 {
		return 0, nil
	}
	if v := p.currentView(cat); v != nil {
		var key [breachd.MaxPasswordHashSize]byte
		done := v.eachInRange(uint32(prefix), key[:p.kind.keySize], fn)
		p.index.mu.RUnlock()
		if done {
			return cat.version, nil
		}
	}
	// Badger's rows of the range, then merged over the base's (base.go),
	// kept until the read is known to be cat's (readStable).
	type hit struct {
		key [breachd.MaxPasswordHashSize]byte
		n   uint64
	}
	tag := p.kind.tag
	b0, b1, nib := byte(prefix>>12), byte(prefix>>4), byte(prefix&15)
	hits, cat, err := readStable(ctx, &p.corpus, cat, func(txn *badger.Txn, cat *catalog) ([]hit, error) {
		var hits []hit
		rows := newOverlay(p.kind.keySize, cat.version)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{tag, b0, b1}})
		defer it.Close()
		for it.Seek([]byte{tag, b0, b1, nib << 4}); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+p.kind.keySize {
				return nil, fmt.Errorf("%w: hash key of %d bytes", ErrCorrupt, len(k))
			}
			if k[3]>>4 != nib {
				break
			}
			if err := item.Value(func(v []byte) error { rows.add(k[1:], v); return nil }); err != nil {
				return nil, err
			}
		}
		var key [breachd.MaxPasswordHashSize]byte
		var x *index
		if b := p.getBase(); b != nil {
			defer b.put()
			x = b.x
		}
		mergeRange(x, rows, 0, rows.len(), cat, uint32(prefix), key[:p.kind.keySize], func(k []byte, n uint64) {
			h := hit{n: n}
			copy(h.key[:], k)
			hits = append(hits, h)
		})
		return hits, nil
	})
	if err != nil {
		return 0, classify("range", err)
	}
	for i := range hits {
		fn(hits[i].key[:p.kind.keySize], hits[i].n)
	}
	return cat.version, nil
}

// Import adds release rel from batches of records (hashes of this kind,
// each with its count) and commits it, visible all at once, when batches
// ends without an error; otherwise nothing changes. A hash repeated within
// the release has its counts added (a plain password list hashed during
// import); a hash known from an earlier release answers the higher of its
// counts; hashes this release lacks keep theirs. expected, if known, sizes
// the filter of a first import.
func (p *Passwords) Import(ctx context.Context, rel breachd.Breach, expected uint64, batches iter.Seq2[[]breachd.PasswordRecord, error]) (breachd.PasswordImportStats, error) {
	size := p.kind.keySize
	st, err := p.importBreach(ctx, rel, expected, func(yield func(input, error) bool) {
		var in input
		for rs, err := range batches {
			in.keys, in.counts = in.keys[:0], in.counts[:0]
			for i := range rs {
				in.keys = append(in.keys, rs[i].Hash[:size]...)
				in.counts = append(in.counts, rs[i].Count)
			}
			if !yield(in, err) || err != nil {
				return
			}
		}
	})
	return breachd.PasswordImportStats{Release: rel.Name, Kind: p.hashKind, Received: st.Received,
		NewHashes: st.New, UpdatedHashes: st.Known, Version: st.Version}, err
}
