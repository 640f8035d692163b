package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/atomicfile"
)

// Rekeying converts a data directory's email corpus of plain digests into
// a keyed one (keyed.go), offline. It writes the keyed corpus beside the
// old one (EmailDir + ".rekey": every row under its keyed digest, every
// other record as it was), opens it once to build its filter, marks it
// complete, and swaps the two directories; the plain one is removed last.
// A crash at any step is finished (or undone, before the mark) by
// finishRekey, which MigrateLayout runs before any corpus is opened.
const (
	rekeyingSuffix = ".rekey"
	plainSuffix    = ".plain"
	rekeyedMark    = "breachd.rekeyed"
)

// RekeyStats counts what Rekey did.
type RekeyStats struct {
	Rows, Records uint64
	Duration      time.Duration
}

// Rekey keys the email corpus of dataDir with key (see above). The corpus
// must not be open. opts are the corpus's options (the key is key).
func Rekey(ctx context.Context, dataDir string, key *IndexKey, opts Options) (RekeyStats, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := MigrateLayout(dataDir, opts.Logger); err != nil {
		return RekeyStats{}, err
	}
	src := EmailDir(dataDir)
	if _, err := os.Stat(src); err != nil {
		return RekeyStats{}, fmt.Errorf("no email corpus in %s: %w", dataDir, err)
	}
	if n, err := watchlistCount(ctx, dataDir, opts); err != nil || n > 0 {
		if err == nil {
			err = breachd.Errorf(breachd.ErrFailedPrecondition, "%s holds %d watchlists of plain digests, which rekey does not convert: delete them (breachctl watch delete), rekey, and create them again (they are keyed from then on)", dataDir, n)
		}
		return RekeyStats{}, err
	}
	db, err := openLocked(ctx, func() (*badger.DB, error) { return badger.Open(badgerOptions(src, opts).WithReadOnly(false)) })
	if err != nil {
		return RekeyStats{}, classify("open "+src, err)
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	switch id, err := indexKeyID(db); {
	case err != nil:
		return RekeyStats{}, err
	case id == key.ID():
		return RekeyStats{}, fmt.Errorf("%w: the email corpus in %s is keyed with this key already", ErrIndexKey, src)
	case id != "":
		return RekeyStats{}, fmt.Errorf("%w: the email corpus in %s is keyed with index key %s already; a keyed corpus cannot be rekeyed (it holds no digests): import the original dumps into a new data directory",
			ErrIndexKey, src, id)
	}
	tmp := src + rekeyingSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return RekeyStats{}, err
	}
	dst, err := badger.Open(badgerOptions(tmp, opts))
	if err != nil {
		return RekeyStats{}, classify("open "+tmp, err)
	}
	st, err := copyKeyed(ctx, db, dst, key, opts.Private)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return st, classify("rekey", err)
	}
	if err := db.Close(); err != nil {
		return st, classify("rekey", err)
	}
	db = nil
	// Opened once, keyed: its filter is built and saved, and whatever
	// the plain corpus had left to collect is collected.
	o := opts
	o.IndexKey, o.BackgroundShare, o.Registerer = key, 1, nil
	s, err := Open(ctx, tmp, o)
	if err != nil {
		return st, fmt.Errorf("opening the rekeyed corpus: %w", err)
	}
	if err := s.Close(); err != nil {
		return st, err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, rekeyedMark), []byte(key.ID()+"\n"), 0o600); err != nil {
		return st, err
	}
	reach("rekey-marked")
	if err := os.Rename(src, src+plainSuffix); err != nil {
		return st, err
	}
	reach("rekey-moved-aside")
	if err := finishRekey(dataDir, opts.Logger); err != nil {
		return st, err
	}
	st.Duration = time.Since(start)
	return st, nil
}

// copyKeyed writes every record of db into dst, each row under its keyed
// digest, and records the key's id; with private, it writes every
// account's private row too (private.go) and records the corpus private.
// Segment records lose their Since (Badger versions of db, which mean
// nothing in dst).
func copyKeyed(ctx context.Context, db, dst *badger.DB, key *IndexKey, private bool) (RekeyStats, error) {
	var st RekeyStats
	wb := dst.NewWriteBatch()
	defer wb.Cancel()
	var plain []breachd.Digest // a chunk of digests whose private rows are due
	var keyed []byte
	flushPrivate := func() error {
		rows, err := key.private.privateRows(plain, keyed)
		for _, r := range rows {
			if err == nil {
				err = wb.Set(r.key, r.val)
			}
		}
		plain, keyed = plain[:0], keyed[:0]
		return err
	}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if st.Rows%65536 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			k := item.KeyCopy(nil)
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			switch {
			case len(k) == 1+breachd.DigestSize && k[0] == emailKind.tag:
				kd := key.Key(breachd.Digest(k[1:]))
				if private {
					plain = append(plain, breachd.Digest(k[1:]))
					keyed = append(keyed, kd[:]...)
					if len(plain) == 4096 {
						if err := flushPrivate(); err != nil {
							return err
						}
					}
				}
				k = emailKind.rowKey(k[:0], kd[:])
				st.Rows++
			case len(k) > 0 && k[0] == tagSegment && len(v) > 0: // a deletion marker is copied as it is
				var r segmentRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%w: segment record: %v", ErrCorrupt, err)
				}
				r.Since = 0
				if v, err = json.Marshal(r); err != nil {
					return err
				}
				st.Records++
			default:
				st.Records++
			}
			if err := wb.Set(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if len(plain) > 0 {
		if err := flushPrivate(); err != nil {
			return st, err
		}
	}
	if private {
		if err := wb.Set(keyPrivate, []byte{1}); err != nil {
			return st, err
		}
	}
	if err := wb.Set(keyIndexKeyID, []byte(key.ID())); err != nil {
		return st, err
	}
	return st, wb.Flush()
}

// finishRekey finishes or undoes a rekey that a crash cut short: a keyed
// corpus marked complete takes the email corpus's place; an unmarked one
// is removed; the plain one goes once the keyed one is in place.
func finishRekey(dataDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src := EmailDir(dataDir)
	tmp, plain := src+rekeyingSuffix, src+plainSuffix
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	marked := exists(filepath.Join(tmp, rekeyedMark))
	switch {
	case !exists(src) && marked:
		if err := os.Rename(tmp, src); err != nil {
			return fmt.Errorf("finishing a rekey: %w", err)
		}
		if err := atomicfile.SyncDir(dataDir); err != nil {
			return err
		}
		log.Info("rekey finished: the email corpus is keyed", "dir", src)
	case !exists(src) && exists(plain):
		if err := os.Rename(plain, src); err != nil {
			return fmt.Errorf("undoing a rekey: %w", err)
		}
		log.Warn("rekey undone: it stopped before the keyed corpus was complete", "dir", src)
	}
	reach("rekey-swapped")
	for _, p := range []string{tmp, plain} {
		if exists(p) && exists(src) {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	if exists(filepath.Join(src, rekeyedMark)) {
		return os.Remove(filepath.Join(src, rekeyedMark))
	}
	return nil
}

// watchlistCount returns how many watchlists dataDir holds.
func watchlistCount(ctx context.Context, dataDir string, opts Options) (int, error) {
	dir := WatchDir(dataDir)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := openLocked(ctx, func() (*badger.DB, error) { return badger.Open(badgerOptions(dir, opts)) })
	if err != nil {
		return 0, classify("open "+dir, err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(txn *badger.Txn) error {
		return scanRecords(txn, tagBreach, func(_, _ []byte) error { n++; return nil })
	})
	return n, err
}
