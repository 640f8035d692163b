package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	r255 "github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// Private checks (issue 24, docs/PRIVATE-LOOKUP.md) answer from a second
// row per account, written by the same import under the same pending
// segment (kept in the email row: see below):
//
//	'v' + bucket (4 bytes) + PRF value (16 bytes) -> the account's keyed digest (32 bytes)
//
// The PRF value is the RFC 9497 OPRF (ristretto255-SHA512) of the
// account's digest under a key derived from the index key: what a client
// computes after the server evaluates its blinded digest. The bucket is the
// digest's first 32 bits under a prefix-preserving encryption (each output
// bit is the input bit XOR a PRF of the bits before it): accounts whose
// digests share their first L bits share their buckets' first L bits, so
// the bucket of any prefix length is one contiguous range of rows, read
// with one seek; and without the key, a row's bucket says nothing of which
// addresses it could hold.
//
// A private row says nothing of membership: its value points at the email
// row, which a private check resolves against the catalogue it loaded, as
// a plain check does. So a row of a pending or abandoned import, or of an
// account a delete took out of every breach, answers nothing, and private
// answers are exact whenever plain ones are. (Such rows stay until a
// rebuild; they are not counted in a bucket's accounts.)
//
// The prefix length the server advertises is the longest at which every
// bucket holds at least Options.BucketMin visible accounts: counted over
// every private row after each commit, in the background; imports only
// grow buckets, so the last count stays true until a delete.
//
// Only a keyed corpus can be private (the PRF key is the index key's), and
// only one whose every account has its row: the corpus records that
// (keyPrivate) when it is created private or rekeyed so, and from then on
// every import writes the rows, whatever the options.

const tagPrivate = 'v'

var keyPrivate = []byte("mprivate")

// privateRowKeySize is the bytes of a private row's key after its tag.
const privateRowKeySize = 4 + breachd.PrivateValueSize

// privateKey is what a private check needs of an index key.
type privateKey struct {
	server oprf.Server
	prefix cipher.Block
}

// privateInfo is the RFC 9497 info (key derivation) of breachd's OPRF key.
const privateInfo = "breachd private lookup v1"

func newPrivateKey(secret []byte) (*privateKey, error) {
	seed := sha256.Sum256(append([]byte("breachd oprf seed v1\x00"), secret...))
	sk, err := oprf.DeriveKey(oprf.SuiteRistretto255, oprf.BaseMode, seed[:], []byte(privateInfo))
	if err != nil {
		return nil, err
	}
	pk := sha256.Sum256(append([]byte("breachd bucket prefix v1\x00"), secret...))
	b, err := aes.NewCipher(pk[:])
	if err != nil {
		return nil, err
	}
	return &privateKey{server: oprf.NewServer(oprf.SuiteRistretto255, sk), prefix: b}, nil
}

// bucket encrypts the first n bits of x, prefix-preservingly: bit i of the
// result is bit i of x XOR the low bit of AES over (i, the bits of x before
// it). The bits after the first n are zero.
func (p *privateKey) bucket(x uint32, n int) uint32 {
	var in, out [aes.BlockSize]byte
	in[0] = 'b'
	var y uint32
	for i := range n {
		in[1] = byte(i)
		binary.BigEndian.PutUint32(in[2:], x&^(^uint32(0)>>i))
		p.prefix.Encrypt(out[:], in[:])
		y |= (x>>(31-i)&1 ^ uint32(out[0]&1)) << (31 - i)
	}
	return y
}

// value returns the PRF value of digest d: the first
// breachd.PrivateValueSize bytes of the OPRF's output.
func (p *privateKey) value(d []byte) ([]byte, error) {
	out, err := p.server.FullEvaluate(d)
	if err != nil {
		return nil, err
	}
	return out[:breachd.PrivateValueSize], nil
}

// evaluate evaluates a client's blinded element.
func (p *privateKey) evaluate(blinded []byte) ([]byte, error) {
	e := r255.Ristretto255.NewElement()
	if err := e.UnmarshalBinary(blinded); err != nil || e.IsIdentity() {
		return nil, breachd.Errorf(breachd.ErrInvalidPrivateQuery, "the blinded element is not an encoded ristretto255 element other than the identity")
	}
	ev, err := p.server.Evaluate(&oprf.EvaluationRequest{Elements: []oprf.Blinded{e}})
	if err != nil {
		return nil, err
	}
	return ev.Elements[0].MarshalBinary()
}

// sideRow is a row an import writes beside its own (engine: input.side).
type sideRow struct{ key, val []byte }

// privateRows returns the private rows of the digests ds, whose keyed
// forms are packed back to back in keyed, computed on every core: the OPRF
// takes about 95 µs a digest on the 2-core machine.
func (p *privateKey) privateRows(ds []breachd.Digest, keyed []byte) ([]sideRow, error) {
	rows := make([]sideRow, len(ds))
	buf := make([]byte, len(ds)*(1+privateRowKeySize))
	workers := min(runtime.GOMAXPROCS(0), (len(ds)+63)/64)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ds); i += workers {
				v, err := p.value(ds[i][:])
				if err != nil {
					errs[w] = err
					return
				}
				k := buf[i*(1+privateRowKeySize) : (i+1)*(1+privateRowKeySize) : (i+1)*(1+privateRowKeySize)]
				k[0] = tagPrivate
				binary.BigEndian.PutUint32(k[1:], p.bucket(binary.BigEndian.Uint32(ds[i][:4]), 32))
				copy(k[5:], v)
				rows[i] = sideRow{key: k, val: keyed[i*breachd.DigestSize : (i+1)*breachd.DigestSize]}
			}
		})
	}
	wg.Wait()
	return rows, errors.Join(errs...)
}

// privateState is a private corpus's: whether it is private, and the
// buckets' last count.
type privateState struct {
	on      atomic.Bool
	buckets atomic.Pointer[breachd.PrivateInfo]
	kick    chan struct{} // a count is wanted
	// mu orders a count's result against a removal (privateRemoving):
	// a count of a catalogue older than removedAt, the version of the
	// last change that removed accounts, is not stored. counted is
	// closed, and replaced, when a count is stored: checks waiting for
	// one wake (waitCount).
	mu        sync.Mutex
	removedAt uint64
	counted   chan struct{}
}

// privateRemoving is called before the catalogue nc replaces old, a change
// that may remove accounts (a delete; on a replica, any backup applied):
// their buckets shrink the moment nc is published, and the prefix length
// counted before could then narrow a check to fewer than BucketMin
// accounts until the next count, which takes seconds at scale. So the
// count stands only if its smallest bucket stays at BucketMin after losing
// every account of the breaches nc lacks (at most their AccountCount;
// digests are uniform, but this bound holds whatever the spread); else
// private checks wait for the count (PrivateInfo; refused with errCounting
// after privateWait), never answer at a prefix that may be too long. The count of old's version or earlier
// that may be running is not stored when it ends.
func (c *corpus) privateRemoving(old, nc *catalog) {
	p := c.private
	if p == nil || !p.on.Load() {
		return
	}
	var removed uint64
	for name, b := range old.byName {
		if n := nc.byName[name]; n == nil {
			removed += uint64(max(b.AccountCount, 0))
		} else if n.AccountCount < b.AccountCount {
			removed += uint64(b.AccountCount - n.AccountCount)
		}
	}
	if removed == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removedAt = nc.version
	info := p.buckets.Load()
	switch {
	case info == nil:
	case info.SmallestBucket >= uint64(info.BucketMin)+removed:
		bound := *info
		bound.SmallestBucket -= removed
		p.buckets.Store(&bound)
	default:
		p.buckets.Store(nil)
		c.log.Info("private lookups wait for the buckets' count: the change may leave a bucket under the minimum at the counted prefix length",
			"prefix_bits", info.PrefixBits, "smallest_bucket", info.SmallestBucket, "accounts_removed_at_most", removed, "corpus_version", nc.version)
	}
}

// openPrivate reads whether the corpus is private, records it so if it is
// new and opts.Private asks, refuses one that ought to be and is not, and
// starts the bucket counter.
func (c *corpus) openPrivate(version uint64) error {
	if c.kind != emailKind || c.opts.IndexKey == nil {
		if c.opts.Private && c.kind == emailKind {
			return fmt.Errorf("%w: private lookups need a keyed corpus: give privacy.index_key_file", ErrIndexKey)
		}
		return nil
	}
	p := &privateState{kick: make(chan struct{}, 1), counted: make(chan struct{})}
	c.private = p
	on, err := c.privateFlag()
	if err != nil {
		return err
	}
	switch {
	case on:
	case !c.opts.Private:
	case version == 0 && !c.opts.Follower:
		// A new corpus: private from its first row.
		err := c.db.Update(func(txn *badger.Txn) error { return txn.Set(keyPrivate, []byte{1}) })
		if err == nil {
			err = c.db.Sync()
		}
		if err != nil {
			return classify("record private lookups", err)
		}
		on = true
	case c.opts.Follower:
		// A replica is private when its writer is: its backups say.
	default:
		return fmt.Errorf("%w: the email corpus in %s was built without private lookups, and privacy.private_lookups is on: re-import the original dumps into a new data directory, or convert a corpus of plain digests with 'breachd rekey --private', or turn private_lookups off",
			ErrIndexKey, c.dir)
	}
	p.on.Store(on)
	p.kick <- struct{}{} // open starts countBuckets
	return nil
}

// privateFlag reads whether the corpus records itself private.
func (c *corpus) privateFlag() (bool, error) {
	return c.hasKey(keyPrivate, "read private lookups flag")
}

// kickPrivate asks for a count of the buckets (after a change committed).
// A replica first reads whether it is private: its writer's backup says.
func (c *corpus) kickPrivate() {
	if c.private == nil {
		return
	}
	if c.opts.Follower && !c.private.on.Load() {
		if on, err := c.privateFlag(); err == nil {
			c.private.on.Store(on)
		}
	}
	select {
	case c.private.kick <- struct{}{}:
	default:
	}
}

// countBuckets counts the buckets each time a count is wanted, until ctx
// ends.
func (c *corpus) countBuckets(ctx context.Context) {
	p := c.private
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		if !p.on.Load() {
			continue
		}
		start := time.Now()
		info, err := c.countOnce(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("counting private lookup buckets failed; the last count stands", "err", err)
			}
			continue
		}
		c.reach("private-counted")
		p.mu.Lock()
		stale := info.CorpusVersion < p.removedAt
		if !stale {
			p.buckets.Store(info)
			close(p.counted)
			p.counted = make(chan struct{})
		}
		p.mu.Unlock()
		if stale {
			// Accounts were removed since: the count kicked then follows.
			continue
		}
		c.log.Info("private lookup buckets counted", "prefix_bits", info.PrefixBits, "smallest_bucket", info.SmallestBucket,
			"accounts", info.Accounts, "corpus_version", info.CorpusVersion, "duration", time.Since(start))
	}
}

// countOnce counts the visible accounts of every bucket at every prefix
// length in one pass over the private rows (sorted by bucket), and
// returns the longest length at which every bucket holds BucketMin.
//
// It is the one reader of rows not under readStable, on purpose: a full
// count takes seconds, paced, and readStable would count again after every
// commit in that time, never finishing under a steady stream of imports.
// A change committed while it counts can only make it count too few for
// its version (a delete's collection takes rows the version still shows;
// an import's rows are under segments the version does not name), so a
// shorter prefix, larger buckets; and every commit asks for a new count.
func (c *corpus) countOnce(ctx context.Context) (*breachd.PrivateInfo, error) {
	if err := c.acquire(); err != nil {
		return nil, err
	}
	defer c.release()
	cat := c.cat.Load()
	txn := c.snapshot(cat)
	defer txn.Discard()
	var (
		groups   [breachd.MaxPrefixBits + 1]uint64 // buckets seen at each length
		smallest [breachd.MaxPrefixBits + 1]uint64 // the smallest closed one
		open     [breachd.MaxPrefixBits + 1]uint64 // accounts of the one still open
		prev     uint32
		accounts uint64
	)
	for l := range smallest {
		smallest[l] = ^uint64(0)
	}
	closeFrom := func(l0 int) {
		for l := l0; l <= breachd.MaxPrefixBits; l++ {
			if open[l] > 0 {
				groups[l]++
				smallest[l] = min(smallest[l], open[l])
				open[l] = 0
			}
		}
	}
	// Paced while checks are answered from the last count; not while they
	// wait for this one (the first count, or after a delete may have left
	// a bucket too small: seconds to minutes at scale, paced).
	var p *pacer
	if c.private.buckets.Load() != nil {
		p = c.pacer()
	}
	err := c.eachPrivate(ctx, txn, cat, 0, 0, p, func(b uint32, _ []byte, _ []*breachd.CatalogEntry) error {
		if accounts > 0 {
			closeFrom(bits.LeadingZeros32(prev^b) + 1)
		}
		for l := range open {
			open[l]++
		}
		prev = b
		accounts++
		return nil
	})
	if err != nil {
		return nil, err
	}
	closeFrom(0)
	info := &breachd.PrivateInfo{BucketMin: c.opts.BucketMin, Accounts: accounts, CorpusVersion: cat.version, SmallestBucket: accounts}
	for l := 1; l <= breachd.MaxPrefixBits; l++ {
		if groups[l] != 1<<l || smallest[l] < uint64(c.opts.BucketMin) {
			break
		}
		info.PrefixBits, info.SmallestBucket = l, smallest[l]
	}
	return info, nil
}

// eachPrivate calls fn, in bucket order, for each visible account of the
// private rows whose buckets' first n bits are b's (n 0: all) in txn,
// pinned to cat, with its bucket, PRF value and breaches (valid during the
// call), pausing as p says (nil: never).
func (c *corpus) eachPrivate(ctx context.Context, txn *badger.Txn, cat *catalog, b uint32, n int, p *pacer, fn func(bucket uint32, value []byte, bs []*breachd.CatalogEntry) error) error {
	start := binary.BigEndian.AppendUint32([]byte{tagPrivate}, b)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: start[:1+n/8]})
	defer it.Close()
	mask := ^uint32(0) << (32 - n) // n 0: shifted by 32, 0
	f := c.filter.Load()
	var v *view
	defer func() {
		if v != nil {
			c.index.mu.RUnlock()
		}
	}()
	var bs []*breachd.CatalogEntry
	var i int
	for it.Seek(start); it.Valid(); it.Next() {
		if i++; i%4096 == 0 {
			if v != nil { // let an index rebuild publish
				c.index.mu.RUnlock()
				v = nil
			}
			if err := p.step(ctx); err != nil {
				return err
			}
		}
		if v == nil && c.index != nil {
			v = c.currentView(cat)
		}
		item := it.Item()
		k := item.Key()
		if len(k) != 1+privateRowKeySize {
			return fmt.Errorf("%w: a private row key of %d bytes", ErrCorrupt, len(k))
		}
		rb := binary.BigEndian.Uint32(k[1:])
		if rb&mask != b {
			break // past the bucket
		}
		var kd breachd.Digest
		if err := item.Value(func(val []byte) error {
			if len(val) != breachd.DigestSize {
				return fmt.Errorf("%w: a private row of %d bytes", ErrCorrupt, len(val))
			}
			copy(kd[:], val)
			return nil
		}); err != nil {
			return err
		}
		bs = bs[:0]
		switch {
		case v != nil: // no filter test: it costs as much as the find
			bs, _ = v.find(&kd)
		case !f.test(kd[:]):
		default:
			if _, err := c.get(txn, kd[:], func(val []byte) error {
				var err error
				bs, err = cat.resolve(bs, val)
				return err
			}); err != nil {
				return err
			}
		}
		if len(bs) == 0 {
			continue
		}
		if err := fn(rb, k[5:], bs); err != nil {
			return err
		}
	}
	return nil
}

// collectPrivate deletes the private rows whose accounts' rows are gone
// (collect just deleted them, or an abandoned import never committed
// them), of those changed after Badger version since (0: all), and
// returns how many. Callers hold the import token: no import writes
// private rows meanwhile.
func (c *corpus) collectPrivate(ctx context.Context, since uint64) (uint64, error) {
	if c.private == nil {
		return 0, nil
	}
	var n uint64
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	txn := c.db.NewTransaction(false)
	defer txn.Discard()
	f := c.filter.Load()
	err := func() error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tagPrivate}, SinceTs: since})
		defer it.Close()
		p := c.pacer()
		var i int
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%4096 == 0 {
				if err := p.step(ctx); err != nil {
					return err
				}
			}
			item := it.Item()
			kd, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			found := false
			if f.test(kd) {
				if found, err = c.get(txn, kd, func([]byte) error { return nil }); err != nil {
					return err
				}
			}
			if !found {
				n++
				if err := wb.Delete(item.KeyCopy(nil)); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if err == nil {
		err = wb.Flush()
	}
	return n, classify("collect private rows", err)
}

// ErrPrivateOff refuses a private check on a corpus that is not private.
var ErrPrivateOff = breachd.NewError(breachd.ErrFailedPrecondition,
	"private lookups are off on this server: its operator turns them on with privacy.index_key_file and privacy.private_lookups (docs/PRIVATE-LOOKUP.md)")

// errCounting answers a private check while the buckets are counted (the
// first count after a start, or after a delete: privateRemoving) for
// longer than privateWait.
var errCounting = breachd.NewError(breachd.ErrUnavailable, "private lookups wait for the buckets to be counted (after a start, or a delete that may leave one too small): retry shortly")

// privateWait is how long a private check waits for the buckets' count
// before it is refused: a count after a delete takes seconds at a few
// million accounts (a delete of 2M of 3M: done within the delete's own
// 15 s), and a sign-in flow would rather wait out part of it than fail.
const privateWait = 10 * time.Second

// PrivateInfo returns the prefix length private checks use now; while the
// buckets are counted, it waits for the count, up to privateWait or until
// ctx ends (then errCounting).
func (s *Store) PrivateInfo(ctx context.Context) (breachd.PrivateInfo, error) {
	p := s.private
	if s.closed.Load() {
		return breachd.PrivateInfo{}, breachd.ErrClosed
	}
	if p == nil || !p.on.Load() {
		return breachd.PrivateInfo{}, ErrPrivateOff
	}
	if info := p.buckets.Load(); info != nil {
		return *info, nil
	}
	return s.waitCount(ctx)
}

// waitCount waits for the buckets' count (see PrivateInfo).
func (s *Store) waitCount(ctx context.Context) (breachd.PrivateInfo, error) {
	p := s.private
	t := time.NewTimer(privateWait)
	defer t.Stop()
	for {
		p.mu.Lock()
		info, counted := p.buckets.Load(), p.counted
		p.mu.Unlock()
		if info != nil {
			return *info, nil
		}
		select {
		case <-counted:
		case <-t.C:
			return breachd.PrivateInfo{}, errCounting
		case <-ctx.Done():
			return breachd.PrivateInfo{}, errCounting
		case <-s.bgCtx.Done():
			return breachd.PrivateInfo{}, breachd.ErrClosed
		}
	}
}

// PrivateCheck answers a private check: the evaluation of the blinded
// element and every exposed account of the query's bucket.
func (s *Store) PrivateCheck(ctx context.Context, q breachd.PrivateQuery) (breachd.PrivateAnswer, error) {
	if err := q.Validate(); err != nil {
		return breachd.PrivateAnswer{}, err
	}
	info, err := s.PrivateInfo(ctx)
	if err != nil {
		return breachd.PrivateAnswer{}, err
	}
	if q.PrefixBits > info.PrefixBits || q.PrefixBits < info.PrefixBits-2 {
		return breachd.PrivateAnswer{}, breachd.ErrPrefixBits(q.PrefixBits, info.PrefixBits)
	}
	pk := s.opts.IndexKey.private
	ev, err := pk.evaluate(q.Blinded)
	if err != nil {
		return breachd.PrivateAnswer{}, err
	}
	var x [4]byte
	copy(x[:], q.Prefix)
	b := pk.bucket(binary.BigEndian.Uint32(x[:]), q.PrefixBits)
	ans := breachd.PrivateAnswer{Evaluated: ev, PrefixBits: info.PrefixBits}
	if err := s.acquire(); err != nil {
		return ans, err
	}
	defer s.release()
	cat := s.cat.Load()
	if len(cat.segments) == 0 {
		ans.CorpusVersion = cat.version
		return ans, nil
	}
	ans.Entries, cat, err = readStable(ctx, &s.corpus, cat, func(txn *badger.Txn, cat *catalog) ([]breachd.PrivateEntry, error) {
		var entries []breachd.PrivateEntry
		err := s.eachPrivate(ctx, txn, cat, b, q.PrefixBits, nil, func(_ uint32, value []byte, bs []*breachd.CatalogEntry) error {
			var e breachd.PrivateEntry
			copy(e.Value[:], value)
			e.Breaches = slices.Clone(bs)
			entries = append(entries, e)
			return nil
		})
		return entries, err
	})
	if err != nil {
		return breachd.PrivateAnswer{}, err
	}
	ans.CorpusVersion = cat.version
	slices.SortFunc(ans.Entries, func(a, b breachd.PrivateEntry) int { return bytes.Compare(a.Value[:], b.Value[:]) })
	return ans, nil
}
