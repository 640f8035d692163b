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
// the corpus version has grown.
type Publisher struct {
	src       Source
	dir       string // the data directory: the state file and temporary objects
	advertise string // the writer's gRPC address, for replicas' refusals
	o         Options
	log       *slog.Logger
	c         *conn
	kick      chan struct{}
}

// PublishedFile records, in the data directory, what was last published.
const PublishedFile = "breachd.published"

// NewPublisher returns a publisher of src to the cluster; Run connects
// (making the buckets if missing) and does the work.
func NewPublisher(src Source, dataDir, advertise string, o Options) *Publisher {
	o.defaults()
	return &Publisher{src: src, dir: dataDir, advertise: advertise, o: o, log: o.Logger, kick: make(chan struct{}, 1)}
}

// Kick asks for a publish soon (after a commit).
func (p *Publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends: at once, on every Kick, and every Retry
// after a failure. It closes the connection when it returns.
func (p *Publisher) Run(ctx context.Context) {
	for p.c == nil {
		c, err := connect(ctx, "breachd writer", p.o, true)
		if err == nil {
			p.c = c
			break
		}
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("cannot reach NATS to publish the corpus yet; retrying", "err", err, "retry", p.o.Retry)
		sleep(ctx, p.o.Retry)
	}
	defer p.c.nc.Close()
	for {
		err := p.publish(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := time.Minute // a safety net: commits kick
		if err != nil {
			p.log.Warn("publishing the corpus failed; retrying", "err", err, "retry", p.o.Retry)
			wait = p.o.Retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.kick:
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
	// From the leader: a stale current (an older entry, or none) would look
	// like a bucket that lost what this writer published, and make it
	// publish a snapshot where replicas wait for a delta.
	cur, err := p.c.getLatest(ctx, p.o.key(keyCurrent))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	if p.advertise != "" {
		if _, err := p.c.kv.Put(ctx, keyWriter, []byte(p.advertise)); err != nil {
			return err
		}
	}
	snapshot := cur == nil || st.Version == 0 || cur.Version != st.Version || cur.Upto != st.Upto
	if (!snapshot && p.src.Version() == st.Version) || p.src.Version() == 0 {
		return nil // nothing new, or nothing yet
	}
	since := st.Upto
	kind := "delta"
	if snapshot {
		since, kind = 0, "snapshot"
	}
	start := time.Now()
	tmp, err := os.CreateTemp(p.dir, "breachd.publish.*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	info, err := p.src.Backup(ctx, io.MultiWriter(tmp, h), since)
	if err != nil {
		return err
	}
	if !snapshot && info.Version == st.Version {
		return nil // Badger changed (a collection) but no answer did: it goes with the next delta
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	e := entry{Kind: kind, Object: fmt.Sprintf("%s%s-%012d-%020d", p.o.key(""), kind, info.Version, info.Upto), SHA256: hex.EncodeToString(h.Sum(nil)),
		Size: size, Since: since, Upto: info.Upto, Version: info.Version, Keys: info.Keys, Published: time.Now().UTC()}
	if _, err := p.c.obs.Put(ctx, jetstream.ObjectMeta{Name: e.Object, Description: "breachd " + kind}, tmp); err != nil {
		return fmt.Errorf("put %s: %w", e.Object, err)
	}
	// The object is complete: now name it, and only then make it current.
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := p.c.kv.Put(ctx, p.o.key(deltaKey(since)), b); err != nil {
		return err
	}
	if snapshot {
		if _, err := p.c.kv.Put(ctx, p.o.key(keySnapshot), b); err != nil {
			return err
		}
	}
	if _, err := p.c.kv.Put(ctx, p.o.key(keyCurrent), b); err != nil {
		return err
	}
	if err := writeState(path, state{Version: e.Version, Upto: e.Upto}); err != nil {
		return err
	}
	p.log.Info("corpus published", "kind", kind, "corpus_version", e.Version, "bytes", size, "duration", time.Since(start))
	return nil
}
