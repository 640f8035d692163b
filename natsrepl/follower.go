package natsrepl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd/internal/atomicfile"
)

// Target is what the follower needs from the replica's corpus.
type Target interface {
	ApplyBackup(ctx context.Context, r io.Reader, expectedKeys uint64) (uint64, error)
	Version() uint64
}

// Follower keeps a replica's corpus at the writer's, and says whether the
// replica may serve: only once it has applied the newest version it has
// seen announced (a replica that starts is not ready until it has caught
// up), and no longer once it has been behind, or without an answer from
// NATS, for longer than Options.MaxLag; unless Options.ServeStale.
type Follower struct {
	dst Target
	dir string
	o   Options
	log *slog.Logger
	m   *metrics

	mu     sync.Mutex
	ready  bool
	reason string // why the replica is not ready
	writer string // the writer's address, from the lease

	// OnReady is called when the replica starts saying it serves,
	// OnUnready when it stops, with the reason; from Run's goroutines, one
	// call at a time.
	OnReady   func()
	OnUnready func(reason string)
	readyMu   sync.Mutex // orders setReady's changes and hooks

	// Run's, and the judge's (under judgeMu: the judge also runs on a
	// ticker of its own, so that a catch-up stuck on a slow download
	// cannot leave the replica saying it serves while it falls behind).
	// offerMu orders offers: the watch's, on Run's loop, and the leader
	// checks', on a goroutine of their own so that a replica learns of a
	// newer current, and starts its lag clock, while a catch-up runs.
	offerMu     sync.Mutex
	judgeMu     sync.Mutex
	seen        *entry    // the newest current accepted
	behindSince time.Time // when the replica first fell behind seen (zero: it is not)
	contact     time.Time // when the stream's leader last told the newest current
	caughtUp    bool      // it has been current since Run started
	none        bool      // NATS says nothing is published (no current at all)
	unreadable  bool      // the leader's current, at the last check, did not parse
	ignored     string    // the object of the last current ignored for its epoch
}

// FollowedFile records, in the data directory, what was last applied.
const FollowedFile = "breachd.follow"

// Follows reports whether dir holds a read replica's corpus (its
// FollowedFile): one that only its writer's backups may change.
func Follows(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FollowedFile))
	return err == nil
}

// ResyncError says that the replica's corpus cannot follow the writer's
// any more (a new writer's history, or deltas it lacks pruned): the
// replica must start again from a snapshot. Run records it; Reset, called
// before the corpus is opened again, empties the directory.
type ResyncError struct{ Dir, Reason string }

func (e *ResyncError) Error() string {
	return fmt.Sprintf("this replica's corpus in %s cannot follow the writer's any more (%s): it stops serving; restarted, it starts again from the writer's newest snapshot",
		e.Dir, e.Reason)
}

// NewFollower returns a follower of the cluster for dst, whose data
// directory is dataDir. Run does the work.
func NewFollower(dst Target, dataDir string, o Options) *Follower {
	o.defaults()
	return &Follower{dst: dst, dir: dataDir, o: o, log: o.Logger, m: newMetrics(&o, false), reason: "starting"}
}

// Writer returns the writer's address, if it published one.
func (f *Follower) Writer() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writer
}

// Ready reports whether the replica serves, and if not, why.
func (f *Follower) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.reason
}

// setReady records whether the replica serves, calling the hooks on a change.
func (f *Follower) setReady(ready bool, reason string) {
	f.readyMu.Lock() // the loop and the judging ticker: changes and hooks in order
	defer f.readyMu.Unlock()
	f.mu.Lock()
	changed := f.ready != ready
	f.ready, f.reason = ready, reason
	f.mu.Unlock()
	if ready {
		f.m.ready.Set(1)
	} else {
		f.m.ready.Set(0)
	}
	switch {
	case changed && ready:
		f.log.Info("replica serving", "corpus_version", f.dst.Version())
		if f.OnReady != nil {
			f.OnReady()
		}
	case changed:
		f.log.Warn("replica not serving", "reason", reason, "corpus_version", f.dst.Version())
		if f.OnUnready != nil {
			f.OnUnready(reason)
		}
	}
}

// Run follows until ctx ends (returning nil), or until the replica must
// start again from a snapshot (a *ResyncError).
func (f *Follower) Run(ctx context.Context) error {
	removeTemps(f.dir, "breachd.follow.*.tmp", f.log)
	path := filepath.Join(f.dir, FollowedFile)
	st, err := readState(path)
	if err != nil {
		return err
	}
	if st.Resync != "" {
		err := &ResyncError{Dir: f.dir, Reason: st.Resync}
		f.setReady(false, err.Reason)
		return err
	}
	judging, stopJudging := context.WithCancel(ctx)
	defer stopJudging()
	go func() {
		t := time.NewTicker(min(max(f.o.MaxLag/4, 100*time.Millisecond), 5*time.Second))
		defer t.Stop()
		for {
			select {
			case <-judging.Done():
				return
			case <-t.C:
				f.judge()
			}
		}
	}()
	f.m.version.Set(float64(st.Version))
	if f.o.ServeStale && st.Version > 0 && st.Version == f.dst.Version() {
		f.setReady(true, "")
	}
	var c *conn
	for c == nil {
		if c, err = connect(ctx, "breachd replica", f.o, false); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.m.errors.Inc()
			f.log.Warn("cannot reach the corpus buckets yet; retrying", "err", err, "retry", f.o.Retry)
			f.judge()
			sleep(ctx, f.o.Retry)
		}
	}
	defer c.nc.Close()
	for ctx.Err() == nil {
		w, err := c.kv.Watch(ctx, f.o.key(keyCurrent))
		if err != nil {
			f.m.errors.Inc()
			f.log.Warn("watching the current corpus failed; retrying", "err", err)
			f.judge()
			sleep(ctx, f.o.Retry)
			continue
		}
		err = f.follow(ctx, c, w)
		w.Stop()
		if re := (*ResyncError)(nil); errors.As(err, &re) {
			f.setReady(false, re.Reason)
			if werr := writeState(path, state{Version: f.dst.Version(), Resync: re.Reason}); werr != nil {
				return errors.Join(err, werr)
			}
			f.log.Error("replica must start again from a snapshot", "reason", re.Reason)
			return err
		}
	}
	return nil
}

// follow catches up whenever current changes, retries failures, and checks
// on NATS every so often. It catches up to the value the watch (or the
// check, which reads the stream's leader) delivered, never to a separate
// read of current: the key-value bucket answers reads from any of its
// replicas (direct get), which may not have that value yet, and a catch-up
// that believed a stale current was done would wait for the next change,
// for ever if none came.
func (f *Follower) follow(ctx context.Context, c *conn, w jetstream.KeyWatcher) error {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	every := min(max(f.o.MaxLag/4, 100*time.Millisecond), 5*time.Second)
	// The leader checks: every so often (and at once, so that a replica in
	// step serves without waiting a tick) the stream's leader is asked for
	// the newest current. That is the replica's contact with NATS, which
	// says whether it is current, and it runs beside the loop: a check
	// made only between catch-ups learnt of a newer current as late as a
	// slow catch-up ended, and the lag clock, started then, let the
	// replica serve while stale beyond max_lag (the chaos harness saw 3.2 s
	// at a max_lag of 2 s). A newer current pokes the loop.
	poke := make(chan struct{}, 1)
	checking, stopChecking := context.WithCancel(ctx)
	var checker sync.WaitGroup
	checker.Add(1)
	go func() {
		defer checker.Done()
		check := time.NewTicker(every)
		defer check.Stop()
		for {
			if f.checkLeader(checking, c, every) {
				select {
				case poke <- struct{}{}:
				default:
				}
			}
			select {
			case <-checking.Done():
				return
			case <-check.C:
			}
		}
	}()
	defer func() {
		stopChecking()
		checker.Wait()
	}()
	values := 0 // the watch's values so far
	for {
		select {
		case <-ctx.Done():
			return nil
		case kve, ok := <-w.Updates():
			if !ok {
				return nil
			}
			// A watch's value is news, not contact: its consumer may sit on
			// a NATS node that lags, and answer with an older current than
			// the writer's (contact is the check's, read from the leader).
			if kve == nil { // the end of the initial values
				f.judgeMu.Lock()
				f.none = values == 0
				f.judgeMu.Unlock()
				break
			}
			values++
			if kve.Operation() != jetstream.KeyValuePut {
				continue // a purge
			}
			e, err := parseEntry(kve.Key(), kve.Value())
			if err != nil {
				f.judgeMu.Lock()
				f.none = false
				f.judgeMu.Unlock()
				f.log.Error("the current corpus entry is unreadable; waiting for the next", "err", err)
				continue
			}
			f.offer(ctx, c, e)
		case <-poke:
		case <-retry.C:
		}
		if seen := f.newest(); seen != nil {
			err := f.catchUp(ctx, c, seen)
			if re := (*ResyncError)(nil); errors.As(err, &re) {
				return err
			}
			if err != nil && ctx.Err() == nil {
				f.m.errors.Inc()
				f.log.Warn("following the writer failed; serving what this replica has, retrying", "err", err,
					"corpus_version", f.dst.Version(), "retry", f.o.Retry)
				retry.Reset(f.o.Retry)
			}
		}
		f.judge()
	}
}

// checkLeader asks the stream's leader for the newest current and offers
// it; it reports whether that was news (a current not taken before).
func (f *Follower) checkLeader(ctx context.Context, c *conn, every time.Duration) bool {
	cctx, cancel := context.WithTimeout(ctx, max(every, time.Second))
	e, err := c.getLatest(cctx, f.o.key(keyCurrent))
	cancel()
	f.judgeMu.Lock()
	f.unreadable = errors.Is(err, errUnreadableEntry)
	f.judgeMu.Unlock()
	switch {
	case err == nil:
		before := f.newest()
		if f.offer(ctx, c, e) {
			f.touched()
		}
		return f.newest() != before
	case errors.Is(err, jetstream.ErrKeyNotFound):
		f.touched()
		f.judgeMu.Lock()
		f.none = f.seen == nil // nothing published yet
		f.judgeMu.Unlock()
	}
	return false
}

// newest returns the newest current accepted, or nil.
func (f *Follower) newest() *entry {
	f.judgeMu.Lock()
	defer f.judgeMu.Unlock()
	return f.seen
}

func (f *Follower) touched() {
	f.judgeMu.Lock()
	f.contact = time.Now()
	f.judgeMu.Unlock()
	f.m.touched()
}

// offer takes e as the newest current, unless it is one already taken or
// was published under an older epoch than the writer lease's (a writer
// that lost the lease). It reports false when it could not tell (the lease
// unread): then e says nothing of whether this replica is current, and
// must not count as contact.
func (f *Follower) offer(ctx context.Context, c *conn, e *entry) bool {
	f.offerMu.Lock()
	defer f.offerMu.Unlock()
	if seen := f.newest(); seen != nil && (e.Object == seen.Object && e.Epoch == seen.Epoch ||
		e.Lineage == seen.Lineage && e.Version < seen.Version) {
		return true // taken already, or older than what was (a watch behind the leader)
	}
	l, _, err := c.readLease(ctx)
	if err != nil {
		f.m.errors.Inc()
		f.log.Warn("reading the writer lease failed; retrying", "err", err)
		return false
	}
	if l != nil {
		f.mu.Lock()
		f.writer = l.Addr
		f.mu.Unlock()
		if e.Epoch < l.Epoch {
			if f.ignored != e.Object {
				f.ignored = e.Object
				f.log.Warn("ignoring a corpus entry published by a writer that no longer holds the lease",
					"entry_epoch", e.Epoch, "lease_epoch", l.Epoch, "holder", l.Writer, "corpus_version", e.Version)
			}
			return true
		}
	}
	f.judgeMu.Lock()
	f.seen, f.none = e, false
	if e.Version > f.dst.Version() && f.behindSince.IsZero() {
		f.behindSince = time.Now() // behind from now, whether or not a judge runs before the catch-up ends
	}
	f.judgeMu.Unlock()
	f.m.seen.Set(float64(e.Version))
	return true
}

// judge decides whether the replica serves.
func (f *Follower) judge() {
	ready, reason := f.verdict()
	f.setReady(ready, reason)
}

// verdict is judge's decision, under judgeMu.
func (f *Follower) verdict() (bool, string) {
	f.judgeMu.Lock()
	defer f.judgeMu.Unlock()
	now := time.Now()
	v := f.dst.Version()
	var seen uint64
	if f.seen != nil {
		seen = f.seen.Version
	}
	behind := f.seen != nil && v < seen
	switch {
	case !behind:
		f.behindSince = time.Time{}
	case f.behindSince.IsZero():
		f.behindSince = now
	}
	if f.seen != nil && !behind {
		f.caughtUp = true
	}
	f.m.version.Set(float64(v))
	f.m.lagVersions.Set(float64(seen - min(seen, v)))
	if behind {
		f.m.lagSeconds.Set(now.Sub(f.behindSince).Seconds())
	} else {
		f.m.lagSeconds.Set(0)
	}
	var reason string
	switch {
	case f.contact.IsZero():
		reason = "not yet in touch with NATS to learn the current version"
	case behind && f.caughtUp && now.Sub(f.behindSince) > f.o.MaxLag:
		// First: while a catch-up runs, the loop asks NATS nothing, and
		// "no answer" would blame NATS for the replica's own slowness.
		reason = fmt.Sprintf("%d versions behind the writer for %s (replication.max_lag %s)", seen-v, now.Sub(f.behindSince).Round(time.Second), f.o.MaxLag)
	case now.Sub(f.contact) > f.o.MaxLag && f.unreadable:
		// The leader answers, but not with a version this replica can
		// compare itself with.
		reason = fmt.Sprintf("the newest corpus entry in NATS is unreadable; not current for %s as far as this replica can tell (replication.max_lag %s)", now.Sub(f.contact).Round(time.Second), f.o.MaxLag)
	case now.Sub(f.contact) > f.o.MaxLag:
		reason = fmt.Sprintf("no answer from NATS for %s (replication.max_lag %s)", now.Sub(f.contact).Round(time.Second), f.o.MaxLag)
	case f.seen == nil && f.none && v > 0:
		reason = fmt.Sprintf("the bucket holds no corpus, and this replica holds version %d", v)
	case f.seen == nil && f.none:
		// The writer's corpus is empty, and so is this one: current.
	case f.seen == nil:
		reason = "the writer has published nothing readable yet"
	case v == 0:
		reason = "no whole corpus version yet"
	case behind && !f.caughtUp:
		reason = fmt.Sprintf("catching up: at version %d of %d", v, seen)
	case behind && now.Sub(f.behindSince) > f.o.MaxLag:
		reason = fmt.Sprintf("%d versions behind the writer for %s (replication.max_lag %s)", seen-v, now.Sub(f.behindSince).Round(time.Second), f.o.MaxLag)
	}
	if reason != "" && f.o.ServeStale && v > 0 {
		reason = "" // stale answers rather than none: the operator's choice
	}
	return reason == "", reason
}

// catchUp applies, in order, what the replica lacks up to cur.
func (f *Follower) catchUp(ctx context.Context, c *conn, cur *entry) error {
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
	if st.Version != 0 && st.Lineage != cur.Lineage {
		return &ResyncError{Dir: f.dir, Reason: fmt.Sprintf("the writer now publishes another corpus history (lineage %q; this replica's is %q): a new writer, a takeover, or a writer that lost its record of publishing",
			cur.Lineage, st.Lineage)}
	}
	for st.Version == 0 || st.Version < cur.Version {
		key := f.o.key(deltaKey(st.Lineage, st.Upto))
		if st.Version == 0 {
			key = f.o.key(keySnapshot)
		}
		e, err := c.get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && st.Version != 0:
			return &ResyncError{Dir: f.dir, Reason: fmt.Sprintf("the delta after its version %d was pruned from the bucket: the replica fell too far behind", st.Version)}
		case err != nil:
			return fmt.Errorf("the entry after Badger version %d (%s): %w", st.Upto, key, err)
		case e.Lineage != cur.Lineage:
			return fmt.Errorf("the entry %s is of lineage %q, current of %q: the writer is publishing a new history; waiting for it", key, e.Lineage, cur.Lineage)
		}
		applying := st
		applying.Applying = e.Version
		if err := writeState(path, applying); err != nil {
			return err
		}
		if err := f.apply(ctx, c, e); err != nil {
			return err
		}
		st = state{Version: e.Version, Upto: e.Upto, Lineage: e.Lineage}
		if err := writeState(path, st); err != nil {
			return err
		}
		f.judge()
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
	n, err := c.read(ctx, e, tmp)
	if err != nil {
		f.log.Error("object rejected", "object", e.Object, "bytes", n, "want_bytes", e.Size, "err", err)
		return err
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
	f.m.bytes.Add(float64(n))
	f.log.Info("corpus followed", "kind", e.Kind, "corpus_version", v, "bytes", n, "duration", time.Since(start))
	return nil
}

// Promote turns the read replica's corpus in dir into one a writer may
// open, for a writer whose own disk was lost: it removes the replica's
// record of following (FollowedFile), once it is sure the corpus holds a
// whole version of its writer's, nothing of a backup applied part way. It
// refuses a replica that must start again from a snapshot, one that was
// applying a backup when it stopped, and one that never finished its first
// snapshot: started with --follow, each of them completes what it lacks.
// A directory without the record (a corpus never published) is left as it
// is; false says so. Removing the record is the last step: Promote cut
// short is done again.
func Promote(dir string) (bool, error) {
	if !Follows(dir) {
		return false, nil
	}
	if err := CanPromote(dir); err != nil {
		return false, err
	}
	if err := os.Remove(filepath.Join(dir, FollowedFile)); err != nil {
		return false, err
	}
	return true, atomicfile.SyncDir(dir)
}

// CanPromote reports why Promote would refuse dir, or nil.
func CanPromote(dir string) error {
	if !Follows(dir) {
		return nil
	}
	st, err := readState(filepath.Join(dir, FollowedFile))
	if err != nil {
		return err
	}
	var why string
	switch {
	case st.Resync != "":
		why = fmt.Sprintf("must start again from a snapshot (%s)", st.Resync)
	case st.Applying != 0:
		why = fmt.Sprintf("was applying its writer's version %d when it stopped, and holds part of it", st.Applying)
	case st.Version == 0:
		why = "never finished its first snapshot"
	default:
		return nil
	}
	return fmt.Errorf("the replica's corpus in %s %s: start it once more with --follow until it serves, stop it, and promote it again", dir, why)
}

// Reset empties a replica's data directory if its follower recorded that
// it must start again from a snapshot (a ResyncError), before the corpus
// is opened. The record goes last: a reset cut short is done again.
func Reset(dir string, log *slog.Logger) (bool, error) {
	path := filepath.Join(dir, FollowedFile)
	st, err := readState(path)
	if err != nil || st.Resync == "" {
		return false, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, de := range entries {
		if de.Name() != FollowedFile {
			if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
				return false, err
			}
		}
	}
	if err := os.Remove(path); err != nil {
		return false, err
	}
	log.Warn("replica corpus emptied: it starts again from the writer's newest snapshot", "dir", dir, "reason", st.Resync)
	return true, nil
}

// removeTemps removes the temporary files matching pattern in dir: at
// start nothing writes them yet, so whatever is there a crash left.
func removeTemps(dir, pattern string, log *slog.Logger) {
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, p := range paths {
		if os.Remove(p) == nil {
			log.Info("removed a temporary file a crash left", "file", filepath.Base(p))
		}
	}
}
