package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// watchKind holds watchlists: each watchlist is a "breach" of this corpus
// (its catalogue entry; each `watch add` a segment), and a row an account
// digest on one or more of them. The engine's imports, deletes and
// counts serve it unchanged; forget removes accounts from one.
var watchKind = &kind{name: "watch", tag: 'w', keySize: breachd.DigestSize, bulk: bulkSpill}

// WatchDir is the watchlist corpus's directory in a data directory.
func WatchDir(dataDir string) string { return filepath.Join(dataDir, "watch") }

// Watchlists is the watchlist corpus, and the exposure events computed
// from it against the email corpus (events.go): the durable outbox, and
// where each webhook endpoint has got to in it. Only a writer opens it.
type Watchlists struct {
	corpus
	emails *Store // what exposure events are computed against
}

// OpenWatchlists opens (creating if needed) the watchlist corpus in dir,
// whose events are computed against emails.
func OpenWatchlists(ctx context.Context, dir string, emails *Store, opts Options) (*Watchlists, error) {
	w := &Watchlists{emails: emails}
	// An event of 1,000 accounts and its records (about 200 KB) must fit
	// in one transaction: 15% of the memtable.
	opts.MemTableSize = max(opts.MemTableSize, 4<<20)
	if err := w.open(ctx, dir, watchKind, opts); err != nil {
		return nil, err
	}
	return w, nil
}

// watchBreach is the catalogue record of watchlist name.
func watchBreach(name string, created time.Time) breachd.Breach {
	return breachd.Breach{Name: name, Title: "watchlist " + name, AddedDate: created}
}

func toWatchlist(e *breachd.CatalogEntry) breachd.Watchlist {
	return breachd.Watchlist{Name: e.Name, Accounts: e.AccountCount, Created: e.AddedDate}
}

// Create makes an empty watchlist; breachd.ErrAlreadyExists if there is one
// of that name. It reconciles first, so that it sees only the imports
// committed after it.
func (w *Watchlists) Create(ctx context.Context, name string) (breachd.Watchlist, error) {
	b := watchBreach(name, time.Now().UTC().Truncate(time.Second))
	if err := b.Validate(); err != nil {
		return breachd.Watchlist{}, err
	}
	done, err := w.takeImportToken(ctx, "creation of watchlist "+name)
	if err != nil {
		return breachd.Watchlist{}, err
	}
	defer done()
	if _, err := w.reconcile(ctx); err != nil {
		return breachd.Watchlist{}, err
	}
	if err := w.acquire(); err != nil {
		return breachd.Watchlist{}, err
	}
	defer w.release()
	old := w.cat.Load()
	if old.byName[name] != nil {
		return breachd.Watchlist{}, breachd.Errorf(breachd.ErrAlreadyExists, "watchlist %s exists: add accounts to it, or delete it first", breachd.Quote(name))
	}
	// A deleted watchlist's events stay in the outbox for the endpoints,
	// but the index of them by name goes now: a new watchlist of that
	// name would list them (events of accounts not on it, before it
	// existed). Before the record: a crash between leaves no watchlist.
	if err := w.deleteUnder(wlPrefix(tagWLIndex, name), "create watchlist"); err != nil {
		return breachd.Watchlist{}, err
	}
	rec := newBreachRecord(b, 0)
	e, err := w.commitEntry(old, &rec, "create watchlist", nil)
	if err != nil {
		return breachd.Watchlist{}, err
	}
	w.log.Info("watchlist created", "watchlist", name)
	return toWatchlist(e), nil
}

// commitEntry writes rec as a catalogue entry at the next version, with
// what rows (if not nil) changes in the same transaction first (it may
// change rec), and publishes it. Callers hold the import token and a call
// slot.
func (c *corpus) commitEntry(old *catalog, rec *breachRecord, op string, rows func(txn *badger.Txn) error) (*breachd.CatalogEntry, error) {
	version := old.version + 1
	c.saveFilterBeforeCommit(c.filter.Load(), version, c.keys.Load())
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	err := c.db.Update(func(txn *badger.Txn) error {
		if rows != nil {
			if err := rows(txn); err != nil {
				return err
			}
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := txn.Set(breachKey(rec.Name), v); err != nil {
			return err
		}
		return txn.Set(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err == nil {
		err = c.db.Sync()
	}
	if err != nil {
		return nil, classify(op, err)
	}
	e := &breachd.CatalogEntry{Breach: rec.Breach, AccountCount: rec.AccountCount}
	c.cat.Store(old.with(version, old.importVersion, rec.Name, e, 0))
	return e, nil
}

// Watchlist returns one watchlist, or breachd.ErrUnknownWatchlist.
func (w *Watchlists) Watchlist(ctx context.Context, name string) (breachd.Watchlist, error) {
	e := w.cat.Load().byName[name]
	if e == nil {
		return breachd.Watchlist{}, unknownWatchlist(name)
	}
	return toWatchlist(e), nil
}

func unknownWatchlist(name string) error {
	return fmt.Errorf("%w %s: create it first (breachctl watch create)", breachd.ErrUnknownWatchlist, breachd.Quote(name))
}

// List returns every watchlist, ordered by name.
func (w *Watchlists) List(ctx context.Context) ([]breachd.Watchlist, error) {
	es, _, err := w.Breaches(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]breachd.Watchlist, 0, len(es))
	for _, e := range es {
		out = append(out, toWatchlist(e))
	}
	return out, nil
}

// Add puts the digests batches yields on watchlist name, all at once when
// batches ends without an error. It returns how many were not on it
// (with another change to it at the same time, only about).
func (w *Watchlists) Add(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error) {
	e := w.cat.Load().byName[name]
	if e == nil {
		return 0, unknownWatchlist(name)
	}
	key := w.emails.opts.IndexKey
	_, err := w.importBreach(ctx, e.Breach, 0, func(yield func(input, error) bool) {
		var in input
		for ds, err := range batches {
			if key != nil && err == nil {
				// Keyed as the email corpus is, so that the diff meets
				// them; each with its digest sealed under the key, so that
				// events can name it. The seals go first: one whose row
				// never commits names nothing.
				err = w.sealAll(key, ds)
			}
			in.keys = appendKeys(in.keys[:0], ds, key)
			if !yield(in, err) || err != nil {
				return
			}
		}
	})
	if err != nil {
		return 0, err
	}
	after := w.cat.Load().byName[name]
	if after == nil {
		return 0, unknownWatchlist(name)
	}
	return uint64(max(0, after.AccountCount-e.AccountCount)), nil
}

// tagSealed holds, on a keyed corpus's watchlists, each account's digest
// sealed under the index key, by its keyed form: 'k' keyed(32) -> sealed.
const tagSealed = 'k'

func sealedKey(keyed []byte) []byte { return append([]byte{tagSealed}, keyed...) }

// sealAll records the sealed digests of ds.
func (w *Watchlists) sealAll(key *IndexKey, ds []breachd.Digest) error {
	wb := w.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range ds {
		kd := key.Key(ds[i])
		if err := wb.Set(sealedKey(kd[:]), key.sealDigest(ds[i][:])); err != nil {
			return classify("watchlist", err)
		}
	}
	return classify("watchlist", wb.Flush())
}

// account returns the digest events name for a watch row's key: the key
// itself, or on a keyed corpus the digest sealed for it.
func (w *Watchlists) account(txn *badger.Txn, k []byte) ([]byte, error) {
	key := w.emails.opts.IndexKey
	if key == nil {
		return k, nil
	}
	item, err := txn.Get(sealedKey(k))
	if err != nil {
		return nil, fmt.Errorf("%w: a watched account without its sealed digest: %v", ErrCorrupt, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	return key.openDigest(v)
}

// Remove takes the digests batches yields off watchlist name, one batch
// at a time, with the exposures recorded for them (events.go). It returns
// how many were on it.
func (w *Watchlists) Remove(ctx context.Context, name string, batches iter.Seq2[[]breachd.Digest, error]) (uint64, error) {
	var removed uint64
	for ds, err := range batches {
		if err != nil {
			return removed, err
		}
		n, err := w.forget(ctx, name, ds)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	w.log.Info("accounts removed from a watchlist", "watchlist", name, "removed", removed)
	return removed, nil
}

// forget removes ds from watchlist name in one transaction with their
// exposures, and publishes the watchlist's new count.
func (w *Watchlists) forget(ctx context.Context, name string, ds []breachd.Digest) (uint64, error) {
	done, err := w.takeImportToken(ctx, "removal from watchlist "+name)
	if err != nil {
		return 0, err
	}
	defer done()
	if err := w.acquire(); err != nil {
		return 0, err
	}
	defer w.release()
	old := w.cat.Load()
	prev := old.byName[name]
	if prev == nil {
		return 0, unknownWatchlist(name)
	}
	mine := map[uint32]bool{}
	for id, n := range old.segNames {
		if n == name {
			mine[id] = true
		}
	}
	var removed, gone uint64
	rec := newBreachRecord(prev.Breach, prev.AccountCount)
	_, err = w.commitEntry(old, &rec, "remove from watchlist", func(txn *badger.Txn) error {
		n := w.kind.entrySize()
		ik := w.emails.opts.IndexKey
		for i := range ds {
			d := ds[i]
			if ik != nil {
				d = ik.Key(d)
			}
			var v []byte
			found, err := w.get(txn, d[:], func(val []byte) error {
				v = slices.Clone(val)
				return nil
			})
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			kept := v[:0:0]
			for j := 0; j+n <= len(v); j += n {
				if seg, _ := w.kind.entry(v, j); !mine[seg] {
					kept = append(kept, v[j:j+n]...)
				}
			}
			if len(kept) == len(v) {
				continue
			}
			removed++
			if err := dropExposures(txn, name, d); err != nil {
				return err
			}
			key := w.kind.rowKey(nil, d[:])
			if len(kept) == 0 {
				gone++
				if err := txn.Delete(key); err != nil {
					return err
				}
			} else if err := txn.Set(key, kept); err != nil {
				return err
			}
		}
		rec.AccountCount = max(0, rec.AccountCount-int64(removed))
		return nil
	})
	if err != nil {
		return 0, err
	}
	w.keys.Store(w.keys.Load() - min(gone, w.keys.Load()))
	return removed, nil
}

// Delete removes watchlist name, its accounts and its exposures. Its
// events stay in the outbox.
func (w *Watchlists) Delete(ctx context.Context, name string) error {
	if w.cat.Load().byName[name] == nil {
		return unknownWatchlist(name)
	}
	if _, _, err := w.DeleteBreach(ctx, name); err != nil {
		return err
	}
	// The exposures go after: a crash between leaves some of a deleted
	// watchlist, which reconcile drops (it resolves no watchlist).
	return w.dropWatchlistExposures(ctx, name)
}
