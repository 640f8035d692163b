package natsrepl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Target is what the follower needs from the replica's corpus.
type Target interface {
	ApplyBackup(ctx context.Context, r io.Reader, expectedKeys uint64) (uint64, error)
	Version() uint64
}

// Follower keeps a replica's corpus at the writer's.
type Follower struct {
	dst    Target
	dir    string
	o      Options
	log    *slog.Logger
	ready  atomic.Bool
	writer atomic.Value // string: the writer's address, as it published it
	// OnReady is called once, when the replica first serves a consistent
	// corpus (a version applied whole).
	OnReady func()
}

// FollowedFile records, in the data directory, what was last applied.
const FollowedFile = "breachd.follow"

// NewFollower returns a follower of the cluster for dst, whose data
// directory is dataDir. Run does the work.
func NewFollower(dst Target, dataDir string, o Options) *Follower {
	o.defaults()
	f := &Follower{dst: dst, dir: dataDir, o: o, log: o.Logger}
	f.writer.Store("")
	return f
}

// Writer returns the writer's address, if it published one.
func (f *Follower) Writer() string { return f.writer.Load().(string) }

// Ready reports whether the replica serves a consistent corpus.
func (f *Follower) Ready() bool { return f.ready.Load() }

func (f *Follower) setReady() {
	if f.ready.CompareAndSwap(false, true) && f.OnReady != nil {
		f.OnReady()
	}
}

// Run follows until ctx ends. A replica whose last apply completed serves
// at once (from what it has) even before the cluster answers.
func (f *Follower) Run(ctx context.Context) {
	if st, err := readState(filepath.Join(f.dir, FollowedFile)); err == nil && st.Version > 0 && st.Version == f.dst.Version() {
		f.setReady()
	}
	var c *conn
	for c == nil {
		var err error
		if c, err = connect(ctx, "breachd replica", f.o, false); err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("cannot reach the corpus buckets yet; retrying", "err", err, "retry", f.o.Retry)
			sleep(ctx, f.o.Retry)
		}
	}
	defer c.nc.Close()
	for ctx.Err() == nil {
		w, err := c.kv.Watch(ctx, f.o.key(keyCurrent))
		if err != nil {
			f.log.Warn("watching the current corpus failed; retrying", "err", err)
			sleep(ctx, f.o.Retry)
			continue
		}
		f.follow(ctx, c, w)
		w.Stop()
	}
}

// follow catches up whenever current changes, and retries failures. It
// catches up to the value the watch delivered, never to a separate read of
// current: the key-value bucket answers reads from any of its replicas
// (direct get), which may not have that value yet, and a catch-up that
// believed a stale current was done would wait for the next change, for
// ever if none came.
func (f *Follower) follow(ctx context.Context, c *conn, w jetstream.KeyWatcher) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	var cur *entry // the newest current the watch delivered
	for {
		select {
		case <-ctx.Done():
			return
		case kve, ok := <-w.Updates():
			if !ok {
				return
			}
			if kve == nil || kve.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a purge
			}
			e, err := parseEntry(kve.Key(), kve.Value())
			if err != nil {
				f.log.Error("the current corpus entry is unreadable; waiting for the next", "err", err)
				continue
			}
			cur = e
		case <-retry.C:
		}
		if cur == nil {
			continue // nothing published yet
		}
		if err := f.catchUp(ctx, c, cur); err != nil && ctx.Err() == nil {
			f.log.Warn("following the writer failed; serving what this replica has, retrying", "err", err,
				"corpus_version", f.dst.Version(), "retry", f.o.Retry)
			retry.Reset(f.o.Retry)
		}
	}
}

// catchUp applies, in order, what the replica lacks up to cur.
func (f *Follower) catchUp(ctx context.Context, c *conn, cur *entry) error {
	if kve, err := c.kv.Get(ctx, keyWriter); err == nil {
		f.writer.Store(string(kve.Value()))
	}
	path := filepath.Join(f.dir, FollowedFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if f.dst.Version() != 0 {
			return fmt.Errorf("the corpus in %s has data (version %d) but no record of following a writer: start the replica on an empty directory", f.dir, f.dst.Version())
		}
		// Recorded before the first snapshot is applied: a replica killed
		// part way through it finds the record and applies it again.
		if err := writeState(path, state{}); err != nil {
			return err
		}
	}
	st, err := readState(path)
	if err != nil {
		return err
	}
	for st.Upto != cur.Upto || st.Version == 0 {
		key := f.o.key(deltaKey(st.Upto))
		if st.Version == 0 {
			key = f.o.key(keySnapshot)
		}
		e, err := c.get(ctx, key)
		if err != nil {
			return fmt.Errorf("the entry after Badger version %d (%s): %w", st.Upto, key, err)
		}
		if err := f.apply(ctx, c, e); err != nil {
			return err
		}
		st = state{Version: e.Version, Upto: e.Upto}
		if err := writeState(path, st); err != nil {
			return err
		}
		f.setReady()
	}
	return nil
}

// apply downloads one object, checks it, and applies it.
func (f *Follower) apply(ctx context.Context, c *conn, e *entry) error {
	start := time.Now()
	tmp, err := os.CreateTemp(f.dir, "breachd.follow.*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	obj, err := c.obs.Get(ctx, e.Object)
	if err != nil {
		return fmt.Errorf("get %s: %w", e.Object, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), obj)
	obj.Close()
	if err != nil {
		return fmt.Errorf("%s rejected: %w", e.Object, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 || n != e.Size {
		f.log.Error("object rejected: checksum mismatch", "object", e.Object, "bytes", n, "want_bytes", e.Size)
		return fmt.Errorf("%s rejected: %d bytes with SHA-256 %s, want %d bytes with %s", e.Object, n, sum, e.Size, e.SHA256)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	v, err := f.dst.ApplyBackup(ctx, tmp, e.Keys)
	if err != nil {
		return fmt.Errorf("apply %s: %w", e.Object, err)
	}
	if v != e.Version {
		return fmt.Errorf("apply %s: the corpus is at version %d, the entry says %d", e.Object, v, e.Version)
	}
	f.log.Info("corpus followed", "kind", e.Kind, "corpus_version", v, "bytes", n, "duration", time.Since(start))
	return nil
}
