package natsrepl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd/store"
)

// Source is what the publisher needs from the writer's corpus.
type Source interface {
	Backup(ctx context.Context, w io.Writer, since uint64) (store.BackupInfo, error)
	Version() uint64
}

// Publisher publishes the writer's corpus: a snapshot when the bucket has
// none (or this writer published nothing to it yet), then a delta whenever
// the corpus version has grown, and a fresh snapshot once the deltas since
// the last add up (Options.MaxDeltas, DeltaShare). It publishes only while
// its writer holds the lease.
type Publisher struct {
	src       Source
	dir       string // the data directory: the state file and temporary objects
	advertise string // the writer's gRPC address, for replicas' refusals
	o         Options
	log       *slog.Logger
	m         *metrics
	c         *conn
	kick      chan struct{}
}

// PublishedFile records, in the data directory, what was last published.
const PublishedFile = "breachd.published"

// NewPublisher returns a publisher of src to the cluster; Run connects
// (making the buckets if missing) and does the work.
func NewPublisher(src Source, dataDir, advertise string, o Options) *Publisher {
	o.defaults()
	return &Publisher{src: src, dir: dataDir, advertise: advertise, o: o, log: o.Logger, m: newMetrics(&o, true), kick: make(chan struct{}, 1)}
}

// Kick asks for a publish soon (after a commit).
func (p *Publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends: at once, on every Kick, and every Retry
// after a failure. It returns nil when ctx ends, and a *LeaseError when
// another writer holds the lease (it publishes nothing then). It closes the
// connection when it returns.
func (p *Publisher) Run(ctx context.Context) error {
	removeTemps(p.dir, "breachd.publish.*.tmp", p.log)
	if p.o.WriterID == "" {
		id, err := WriterID(p.dir)
		if err != nil {
			return fmt.Errorf("the writer's ID: %w", err)
		}
		p.o.WriterID = id
	}
	for p.c == nil {
		c, err := connect(ctx, "breachd writer", p.o, true)
		if err == nil {
			p.c = c
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		p.m.errors.Inc()
		p.log.Warn("cannot reach NATS to publish the corpus yet; retrying", "err", err, "retry", p.o.Retry)
		sleep(ctx, p.o.Retry)
	}
	defer p.c.nc.Close()
	// A change of the lease (a takeover) is heard at once: the next
	// publish finds it and stops.
	var leaseChanged <-chan jetstream.KeyValueEntry
	if w, err := p.c.kv.Watch(ctx, keyLease, jetstream.UpdatesOnly()); err == nil {
		defer w.Stop()
		leaseChanged = w.Updates()
	}
	for {
		err := p.publish(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if le := (*LeaseError)(nil); errors.As(err, &le) {
			p.log.Error("not publishing: another writer holds the lease", "holder", le.Holder.Writer, "holder_addr", le.Holder.Addr,
				"holder_host", le.Holder.Host, "since", le.Holder.Since, "epoch", le.Holder.Epoch)
			return err
		}
		wait := time.Minute // a safety net: commits kick
		if err != nil {
			p.m.errors.Inc()
			p.log.Warn("publishing the corpus failed; retrying", "err", err, "retry", p.o.Retry)
			wait = p.o.Retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-p.kick:
		case _, ok := <-leaseChanged:
			if !ok {
				leaseChanged = nil
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// publish publishes what the bucket lacks, if anything.
func (p *Publisher) publish(ctx context.Context) error {
	path := filepath.Join(p.dir, PublishedFile)
	st, err := readState(path)
	if err != nil {
		return err
	}
	lease, err := p.c.acquire(ctx, p.o.KVBucket, p.o.WriterID, p.advertise)
	if err != nil {
		return err
	}
	p.m.touched()
	// From the leader: a stale current (an older entry, or none) would look
	// like a bucket that lost what this writer published, and make it
	// publish a snapshot where replicas wait for a delta.
	cur, err := p.c.getLatest(ctx, p.o.key(keyCurrent))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	if p.src.Version() == 0 {
		return nil // nothing yet
	}
	if cur != nil && cur.Lineage != "" && cur.Epoch == lease.Epoch && cur.Version > st.Version && cur.Version <= p.src.Version() &&
		(cur.Lineage == st.Lineage || cur.Kind == "snapshot") {
		// The bucket took this writer's last entry but the state file
		// does not say so: the writer stopped, or the answer to the put
		// was lost (a NATS node killed), between naming it current and
		// recording it. Only this writer names entries current at its
		// lease's epoch, and its corpus holds that version: record it,
		// rather than start a new lineage and make every replica start
		// again from a snapshot. (A corpus behind current, restored from
		// an old copy, still starts a new lineage.)
		p.log.Info("taking the entry the bucket holds as published", "kind", cur.Kind, "corpus_version", cur.Version, "recorded_version", st.Version)
		if cur.Kind == "snapshot" {
			st = state{Lineage: cur.Lineage, SnapshotUpto: cur.Upto, SnapshotBytes: cur.Size}
		} else {
			st.Deltas++
			st.DeltaBytes += cur.Size
		}
		st.Version, st.Upto = cur.Version, cur.Upto
		if err := writeState(path, st); err != nil {
			return err
		}
	}
	continues := cur != nil && st.Version != 0 && cur.Version == st.Version && cur.Upto == st.Upto && cur.Lineage == st.Lineage
	if !continues {
		// Nothing of this writer's history is current: start a new one.
		// Replicas of another lineage start again from this snapshot.
		return p.snapshot(ctx, path, st, lease, newID())
	}
	if p.src.Version() == st.Version {
		if cur.Epoch != lease.Epoch {
			// This writer holds the lease again after a takeover: replicas
			// ignore entries of the older epoch; vouch for current anew.
			e := *cur
			e.Epoch = lease.Epoch
			return p.name(ctx, e, false)
		}
		return nil // nothing new
	}
	if err := p.delta(ctx, path, &st, lease); err != nil {
		return err
	}
	if st.Deltas >= p.o.MaxDeltas || float64(st.DeltaBytes) > p.o.DeltaShare*float64(st.SnapshotBytes) {
		return p.refresh(ctx, path, st, lease)
	}
	return nil
}

// backup writes a backup since since to a temporary file, returning it
// (rewound) with its size and SHA-256; the caller removes it.
func (p *Publisher) backup(ctx context.Context, since uint64) (*os.File, store.BackupInfo, int64, string, error) {
	tmp, err := os.CreateTemp(p.dir, "breachd.publish.*.tmp")
	if err != nil {
		return nil, store.BackupInfo{}, 0, "", err
	}
	fail := func(err error) (*os.File, store.BackupInfo, int64, string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, store.BackupInfo{}, 0, "", err
	}
	h := sha256.New()
	info, err := p.src.Backup(ctx, io.MultiWriter(tmp, h), since)
	if err != nil {
		return fail(err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	return tmp, info, size, hex.EncodeToString(h.Sum(nil)), nil
}

func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// snapshot publishes a snapshot starting lineage, and prunes what no
// replica of lineage needs.
func (p *Publisher) snapshot(ctx context.Context, path string, old state, lease Lease, lineage string) error {
	start := time.Now()
	tmp, info, size, sum, err := p.backup(ctx, 0)
	if err != nil {
		return err
	}
	defer discard(tmp)
	e := entry{Kind: "snapshot", Object: p.objectName("snapshot", lineage, info.Version, info.Upto), SHA256: sum, Size: size,
		Upto: info.Upto, Version: info.Version, Keys: info.Keys, Lineage: lineage, Epoch: lease.Epoch}
	if err := p.put(ctx, e, tmp); err != nil {
		return err
	}
	e.Published = time.Now().UTC() // complete: replicas may fetch it from now
	// Named as the first link of its lineage's chain, the newest snapshot,
	// and current.
	if err := p.putKey(ctx, deltaKey(lineage, 0), e); err != nil {
		return err
	}
	if err := p.name(ctx, e, true); err != nil {
		return err
	}
	st := state{Version: e.Version, Upto: e.Upto, Lineage: lineage, SnapshotUpto: e.Upto, SnapshotBytes: size}
	if err := writeState(path, st); err != nil {
		return err
	}
	p.published(e, start)
	return p.prune(ctx, st)
}

// delta publishes what changed since st, and records it in st.
func (p *Publisher) delta(ctx context.Context, path string, st *state, lease Lease) error {
	start := time.Now()
	tmp, info, size, sum, err := p.backup(ctx, st.Upto)
	if err != nil {
		return err
	}
	defer discard(tmp)
	if info.Version == st.Version {
		return nil // Badger changed (a collection) but no answer did: it goes with the next delta
	}
	e := entry{Kind: "delta", Object: p.objectName("delta", st.Lineage, info.Version, info.Upto), SHA256: sum, Size: size,
		Since: st.Upto, Upto: info.Upto, Version: info.Version, Keys: info.Keys, Lineage: st.Lineage, Epoch: lease.Epoch}
	if err := p.put(ctx, e, tmp); err != nil {
		return err
	}
	e.Published = time.Now().UTC() // complete: replicas may fetch it from now
	// The object is complete: now name it, and only then make it current.
	if err := p.putKey(ctx, deltaKey(e.Lineage, e.Since), e); err != nil {
		return err
	}
	if err := p.name(ctx, e, false); err != nil {
		return err
	}
	st.Version, st.Upto = e.Version, e.Upto
	st.Deltas++
	st.DeltaBytes += size
	if err := writeState(path, *st); err != nil {
		return err
	}
	p.published(e, start)
	return nil
}

// refresh publishes a fresh snapshot of st's lineage at st's link of the
// chain, for new replicas, so that they download about one snapshot rather
// than the whole history; then it prunes what the snapshot before this one
// superseded (replicas that are behind still have a generation's time to
// catch up by deltas). The snapshot may hold Badger entries newer than its
// link (a collection since the last delta): the next delta brings them
// again, with the same versions, which changes nothing.
func (p *Publisher) refresh(ctx context.Context, path string, st state, lease Lease) error {
	start := time.Now()
	tmp, info, size, sum, err := p.backup(ctx, 0)
	if err != nil {
		return err
	}
	defer discard(tmp)
	if info.Version != st.Version {
		return nil // a change committed meanwhile: its delta first; the next publish refreshes
	}
	e := entry{Kind: "snapshot", Object: p.objectName("snapshot", st.Lineage, info.Version, st.Upto), SHA256: sum, Size: size,
		Upto: st.Upto, Version: info.Version, Keys: info.Keys, Lineage: st.Lineage, Epoch: lease.Epoch}
	if err := p.put(ctx, e, tmp); err != nil {
		return err
	}
	e.Published = time.Now().UTC() // complete: replicas may fetch it from now
	if err := p.putKey(ctx, keySnapshot, e); err != nil {
		return err
	}
	st.PruneBefore, st.SnapshotUpto, st.SnapshotBytes, st.Deltas, st.DeltaBytes = st.SnapshotUpto, st.Upto, size, 0, 0
	if err := writeState(path, st); err != nil {
		return err
	}
	p.published(e, start)
	return p.prune(ctx, st)
}

func (p *Publisher) published(e entry, start time.Time) {
	p.m.version.Set(float64(e.Version))
	p.m.bytes.Add(float64(e.Size))
	p.log.Info("corpus published", "kind", e.Kind, "corpus_version", e.Version, "bytes", e.Size, "duration", time.Since(start))
}

// objectName names an object of this corpus.
func (p *Publisher) objectName(kind, lineage string, version, upto uint64) string {
	if lineage == "" {
		return fmt.Sprintf("%s%s-%012d-%020d", p.o.key(""), kind, version, upto)
	}
	return fmt.Sprintf("%s%s-%s-%012d-%020d", p.o.key(""), kind, lineage, version, upto)
}

// put stores e's object, read from r, and reads it back whole. Put can
// report success for an object whose chunks do not match its digest (seen
// by the chaos harness: a stream leader killed while its chunks were in
// flight), which every replica would then reject for ever; read back, it
// is an error here, and the next publish puts it again.
func (p *Publisher) put(ctx context.Context, e entry, r io.Reader) error {
	if _, err := p.c.obs.Put(ctx, jetstream.ObjectMeta{Name: e.Object, Description: "breachd " + e.Kind}, r); err != nil {
		return fmt.Errorf("put %s: %w", e.Object, err)
	}
	if _, err := p.c.read(ctx, &e, io.Discard); err != nil {
		return fmt.Errorf("reading back what was published: %w", err)
	}
	return nil
}

func (p *Publisher) putKey(ctx context.Context, key string, e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = p.c.kv.Put(ctx, p.o.key(key), b)
	return err
}

// name makes e the newest snapshot (if snapshot) and current. Current is
// written only if the lease is still this writer's, at the epoch e
// carries; a takeover after that check leaves a current of the older epoch,
// which replicas ignore.
func (p *Publisher) name(ctx context.Context, e entry, snapshot bool) error {
	if snapshot {
		if err := p.putKey(ctx, keySnapshot, e); err != nil {
			return err
		}
	}
	l, _, err := p.c.readLease(ctx)
	if err != nil {
		return err
	}
	if l == nil || l.Writer != p.o.WriterID || l.Epoch != e.Epoch {
		if l == nil {
			return errors.New("the writer lease vanished while publishing")
		}
		return &LeaseError{Bucket: p.o.KVBucket, Holder: *l}
	}
	return p.putKey(ctx, keyCurrent, e)
}

// prune deletes the entries and objects of this corpus that no replica of
// st's lineage needs: other lineages', and the links of st's chain before
// st.PruneBefore.
func (p *Publisher) prune(ctx context.Context, st state) error {
	keep := map[string]bool{}
	lister, err := p.c.kv.ListKeysFiltered(ctx, p.o.key("d.>"))
	if err != nil {
		return fmt.Errorf("pruning: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var pruned int
	for _, k := range keys {
		e, err := p.c.get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("pruning: %w", err)
		}
		if e.Lineage == st.Lineage && e.Since >= st.PruneBefore {
			keep[e.Object] = true
			continue
		}
		if err := p.c.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("pruning %s: %w", k, err)
		}
		pruned++
	}
	for _, k := range []string{keySnapshot, keyCurrent} {
		if e, err := p.c.get(ctx, p.o.key(k)); err == nil {
			keep[e.Object] = true
		}
	}
	objects, err := p.c.obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return fmt.Errorf("pruning: %w", err)
	}
	prefix := p.o.key("")
	var bytes uint64
	for _, oi := range objects {
		name := strings.TrimPrefix(oi.Name, prefix)
		if !strings.HasPrefix(oi.Name, prefix) || !(strings.HasPrefix(name, "snapshot-") || strings.HasPrefix(name, "delta-")) || keep[oi.Name] {
			continue
		}
		if err := p.c.obs.Delete(ctx, oi.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("pruning %s: %w", oi.Name, err)
		}
		bytes += oi.Size
		pruned++
	}
	if pruned > 0 {
		p.log.Info("replication history pruned", "entries_and_objects", pruned, "bytes", bytes)
	}
	return nil
}
