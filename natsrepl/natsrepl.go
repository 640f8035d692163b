package natsrepl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breachd/breachd/internal/atomicfile"
)

// Options say how to reach the cluster and which buckets to use.
type Options struct {
	// URL lists the servers, e.g. "nats://n1:4222,nats://n2:4222".
	URL string
	// CredsFile is a NATS credentials file (JWT and seed); Token a token.
	// At most one of them.
	CredsFile string
	Token     string
	// CAFile, CertFile and KeyFile turn on TLS (and a client certificate).
	CAFile, CertFile, KeyFile string
	// ObjectBucket holds the backups, KVBucket the entries naming them.
	ObjectBucket, KVBucket string
	// Replicas is how many JetStream servers keep each bucket (3 in a
	// three-node cluster; 1 for a single server). Used when the publisher
	// creates the buckets.
	Replicas int
	// Corpus names the corpus replicated, when a daemon replicates more
	// than one through the same buckets: "" for the email corpus, "sha1"
	// or "ntlm" for a password corpus. It prefixes keys and objects.
	Corpus string
	// Retry is how long to wait after a failure (default 2s).
	Retry time.Duration

	// WriterID names the writer in the lease (see Lease): every corpus of
	// one daemon publishes under one ID, kept in its data directory
	// (WriterID). Empty: the publisher's own, kept in its directory.
	WriterID string
	// MaxDeltas and DeltaShare bound the history a new replica downloads:
	// after MaxDeltas deltas (default 64), or once the deltas since the
	// newest snapshot add up to DeltaShare of its size (default 0.5), the
	// writer publishes a fresh snapshot, and prunes what the one before it
	// superseded.
	MaxDeltas  int
	DeltaShare float64

	// MaxLag is how far behind a replica may fall before it stops saying it
	// serves: behind the newest version it has seen for longer than this,
	// or without an answer from NATS for this long (default 30s).
	MaxLag time.Duration
	// ServeStale makes a replica serve what it holds whatever its lag (it
	// still reports the lag): for operators who prefer stale answers to
	// none.
	ServeStale bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Defaults of Options.
const (
	DefaultObjectBucket = "breachd-corpus"
	DefaultKVBucket     = "breachd-state"
	DefaultMaxLag       = 30 * time.Second
	DefaultMaxDeltas    = 64
)

func (o *Options) defaults() {
	if o.ObjectBucket == "" {
		o.ObjectBucket = DefaultObjectBucket
	}
	if o.KVBucket == "" {
		o.KVBucket = DefaultKVBucket
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Retry == 0 {
		o.Retry = 2 * time.Second
	}
	if o.MaxDeltas == 0 {
		o.MaxDeltas = DefaultMaxDeltas
	}
	if o.DeltaShare == 0 {
		o.DeltaShare = 0.5
	}
	if o.MaxLag == 0 {
		o.MaxLag = DefaultMaxLag
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Corpus != "" {
		o.Logger = o.Logger.With("corpus", o.Corpus)
	}
}

// corpusName names o's corpus in logs and metrics.
func (o *Options) corpusName() string {
	if o.Corpus == "" {
		return "emails"
	}
	return o.Corpus
}

// key names a key of o's corpus in the key-value bucket.
func (o *Options) key(k string) string {
	if o.Corpus == "" {
		return k
	}
	return o.Corpus + "." + k
}

// entry is what the key-value bucket says of one backup.
type entry struct {
	Kind    string `json:"kind"` // "snapshot" or "delta"
	Object  string `json:"object"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Since   uint64 `json:"since"`   // the Badger version it follows (0: a snapshot)
	Upto    uint64 `json:"upto"`    // the Badger version it reaches: the next delta's Since
	Version uint64 `json:"version"` // the corpus version it brings a replica to
	Keys    uint64 `json:"keys"`    // committed accounts at that version
	// Published is when the object was complete (uploaded and read back),
	// so that replicas could fetch it: what a replica's lag is judged
	// from. (It was stamped before the upload, which under load put
	// seconds of the writer's upload on the replicas' account.)
	Published time.Time `json:"published"`
	// Lineage names the writer's corpus history the entry belongs to: a
	// snapshot published from scratch starts a new one, and a replica
	// applies deltas only of its own lineage. "" before lineages existed.
	Lineage string `json:"lineage,omitempty"`
	// Epoch is the writer lease's epoch it was published under: replicas
	// ignore entries of an epoch older than the lease's (a writer that lost
	// its lease may still be writing).
	Epoch uint64 `json:"epoch,omitempty"`
}

// deltaKey names the entry of the delta that follows Badger version since
// in lineage.
func deltaKey(lineage string, since uint64) string {
	if lineage == "" {
		return fmt.Sprintf("d.%020d", since)
	}
	return fmt.Sprintf("d.%s.%020d", lineage, since)
}

const (
	keyCurrent  = "current"
	keySnapshot = "snapshot"
	keyLease    = "lease" // one for the bucket: every corpus of a daemon publishes under it
)

// conn is a connection and the two buckets.
type conn struct {
	nc  *nats.Conn
	obs jetstream.ObjectStore
	kv  jetstream.KeyValue
}

// connect reaches the cluster; create makes the buckets if missing (the
// publisher), otherwise they must exist (a follower waits for them).
func connect(ctx context.Context, name string, o Options, create bool) (*conn, error) {
	nc, js, err := dial(name, o)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc}
	if create {
		c.obs, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: o.ObjectBucket, Replicas: o.Replicas,
			Description: "breachd corpus snapshots and deltas"})
		if err == nil {
			c.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: o.KVBucket, Replicas: o.Replicas,
				Description: "breachd: which snapshots and deltas exist, and the current one"})
		}
	} else {
		c.obs, err = js.ObjectStore(ctx, o.ObjectBucket)
		if err == nil {
			c.kv, err = js.KeyValue(ctx, o.KVBucket)
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats buckets %s and %s: %w", o.ObjectBucket, o.KVBucket, err)
	}
	return c, nil
}

// dial connects to o's cluster, as name, with o's credentials.
func dial(name string, o Options) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true)}
	switch {
	case o.CredsFile != "" && o.Token != "":
		return nil, nil, errors.New("nats: a credentials file or a token, not both")
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// get reads the entry at key. Get is answered by any replica of the bucket
// (direct get), which may not hold a value put a moment ago; a key it does
// not find is read again from the stream's leader (getLatest).
func (c *conn) get(ctx context.Context, key string) (*entry, error) {
	kve, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c.getLatest(ctx, key)
	}
	if err != nil {
		return nil, err
	}
	return parseEntry(key, kve.Value())
}

// latestTimeout bounds a read from a stream's leader.
const latestTimeout = 2 * time.Second

// getLatest reads the entry at key from the stream's leader (latest).
func (c *conn) getLatest(ctx context.Context, key string) (*entry, error) {
	v, _, err := c.latest(ctx, key)
	if err != nil {
		return nil, err
	}
	return parseEntry(key, v)
}

// latest reads key's newest value, and its revision, from the stream's
// leader: the JetStream message-get API, which only the leader answers
// (unlike a direct get, answered by any replica, or a watch, whose ordered
// consumer may sit on a replica that lags: seen by the chaos harness as a
// writer reading an older current than it had just written). Use it where
// a stale value would mislead (the writer deciding whether the bucket still
// holds what it published; the lease).
func (c *conn) latest(ctx context.Context, key string) ([]byte, uint64, error) {
	// Short: after a node is killed the request may go unanswered until
	// the stream has a leader again, and the caller retries
	// (Options.Retry) sooner than a long wait would end.
	ctx, cancel := context.WithTimeout(ctx, latestTimeout)
	defer cancel()
	bucket := c.kv.Bucket()
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	msg, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return nil, 0, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, 0, fmt.Errorf("reading %s: %s (%d)", key, resp.Error.Description, resp.Error.Code)
	case resp.Message == nil:
		return nil, 0, fmt.Errorf("reading %s: an empty answer", key)
	case bytes.Contains(resp.Message.Hdrs, []byte("KV-Operation")): // a delete or purge marker
		return nil, 0, jetstream.ErrKeyNotFound
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

// read copies e's object to w, checking it whole: JetStream's digest of
// its chunks, and the size and SHA-256 that e records. The publisher reads
// back what it put before naming it (see Publisher.put); the follower
// applies nothing that fails it.
func (c *conn) read(ctx context.Context, e *entry, w io.Writer) (int64, error) {
	obj, err := c.obs.Get(ctx, e.Object)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", e.Object, err)
	}
	defer obj.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), obj)
	if err != nil {
		return n, fmt.Errorf("%s rejected: %w", e.Object, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != e.SHA256 || n != e.Size {
		return n, fmt.Errorf("%s rejected: checksum mismatch: %d bytes with SHA-256 %s, want %d bytes with %s", e.Object, n, sum, e.Size, e.SHA256)
	}
	return n, nil
}

func parseEntry(key string, v []byte) (*entry, error) {
	var e entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("%w: entry %s: %w", errUnreadableEntry, key, err)
	}
	return &e, nil
}

// errUnreadableEntry is an entry in the bucket that does not parse.
var errUnreadableEntry = errors.New("unreadable corpus entry")

// state is what a writer last published, or what a replica last applied,
// kept in a small file in the data directory.
type state struct {
	Version uint64 `json:"version"`
	Upto    uint64 `json:"upto"`
	Lineage string `json:"lineage,omitempty"`

	// The writer's: the newest snapshot's Upto and size, the deltas
	// published since and their bytes (when to publish a fresh snapshot),
	// and the Upto of the snapshot before it (what to prune).
	SnapshotUpto  uint64 `json:"snapshot_upto,omitempty"`
	SnapshotBytes int64  `json:"snapshot_bytes,omitempty"`
	Deltas        int    `json:"deltas,omitempty"`
	DeltaBytes    int64  `json:"delta_bytes,omitempty"`
	PruneBefore   uint64 `json:"prune_before,omitempty"`

	// A replica's: why its corpus cannot follow the writer's any more; it
	// starts again from a snapshot (NeedsResync).
	Resync string `json:"resync,omitempty"`
	// A replica's: the version of the backup it is applying, recorded
	// before it starts and cleared once it is applied. A corpus stopped
	// part way holds part of that backup (its rows, invisible until its
	// catalogue), which only applying it again completes (Promote).
	Applying uint64 `json:"applying,omitempty"`
}

func readState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func writeState(path string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
