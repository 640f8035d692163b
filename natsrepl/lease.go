package natsrepl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/breachd/breachd/internal/atomicfile"
)

// The one-writer rule. The key-value bucket's "lease" key names the writer
// that may publish: its ID (kept in its data directory), its address, the
// lease's epoch and since when it holds it. A publisher takes a free lease
// (a create: of two racing writers one wins), keeps one it holds, and
// refuses to publish under another writer's: its daemon stops, naming the
// holder. Takeover hands the lease over deliberately, one epoch higher.
// Every entry carries the epoch it was published under and replicas ignore
// entries older than the lease, so a writer that loses its lease while it
// publishes changes nothing a replica serves.

// Lease is the writer lease's value.
type Lease struct {
	Writer string    `json:"writer"` // the holder's ID (WriterID)
	Addr   string    `json:"addr"`   // its gRPC address, for replicas' refusals
	Host   string    `json:"host"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
}

func (l Lease) String() string {
	addr := l.Addr
	if addr == "" {
		addr = "no address"
	}
	return fmt.Sprintf("writer %s (%s, on host %s) since %s, epoch %d", l.Writer, addr, l.Host, l.Since.Format(time.RFC3339), l.Epoch)
}

// LeaseError says that another writer holds the lease.
type LeaseError struct {
	Bucket string
	Holder Lease
}

func (e *LeaseError) Error() string {
	return fmt.Sprintf("another writer holds the lease of NATS bucket %s: %s. This daemon publishes nothing: stop it, "+
		"start it as a replica (--follow), or hand the lease to it deliberately with 'breachd replication takeover'", e.Bucket, e.Holder)
}

// WriterIDFile holds, in a writer's data directory, the ID it publishes
// under.
const WriterIDFile = "breachd.writer-id"

// WriterID returns the writer ID kept in dir, making one on first use.
func WriterID(dir string) (string, error) {
	path := filepath.Join(dir, WriterIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	id := newID()
	return id, atomicfile.WriteFile(path, []byte(id+"\n"), 0o644)
}

// newID is 16 random hex digits.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readLease reads the lease from the stream's leader, with its revision;
// nil when there is none.
func (c *conn) readLease(ctx context.Context) (*Lease, uint64, error) {
	v, rev, err := c.latest(ctx, keyLease)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var l Lease
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, 0, fmt.Errorf("the writer lease is unreadable: %w", err)
	}
	return &l, rev, nil
}

// acquire returns the lease held by id, taking it if nobody holds it; a
// lease held by another writer is a *LeaseError.
func (c *conn) acquire(ctx context.Context, bucket, id, addr string) (Lease, error) {
	host, _ := os.Hostname()
	for {
		l, rev, err := c.readLease(ctx)
		if err != nil {
			return Lease{}, err
		}
		switch {
		case l == nil:
			nl := Lease{Writer: id, Addr: addr, Host: host, Epoch: 1, Since: time.Now().UTC()}
			b, _ := json.Marshal(nl)
			if _, err := c.kv.Create(ctx, keyLease, b); conflict(err) {
				continue // another writer was quicker: read whose it is
			} else if err != nil {
				return Lease{}, err
			}
			return nl, nil
		case l.Writer != id:
			return Lease{}, &LeaseError{Bucket: bucket, Holder: *l}
		case addr != "" && (l.Addr != addr || l.Host != host):
			nl := *l
			nl.Addr, nl.Host = addr, host
			b, _ := json.Marshal(nl)
			if _, err := c.kv.Update(ctx, keyLease, b, rev); conflict(err) {
				continue // changed meanwhile (a takeover?): read it again
			} else if err != nil {
				return Lease{}, err
			}
			return nl, nil
		}
		return *l, nil
	}
}

// Takeover hands the writer lease of o's buckets to the writer whose ID is
// id (its address addr), whoever holds it now, one epoch higher. The
// writer that held it publishes nothing more: its next attempt finds the
// lease gone and stops, and replicas ignore anything of the older epoch.
// It returns the lease before (nil if there was none) and after.
func Takeover(ctx context.Context, o Options, id, addr string) (*Lease, Lease, error) {
	o.defaults()
	c, err := connect(ctx, "breachd takeover", o, true)
	if err != nil {
		return nil, Lease{}, err
	}
	defer c.nc.Close()
	host, _ := os.Hostname()
	for {
		old, rev, err := c.readLease(ctx)
		if err != nil {
			return nil, Lease{}, err
		}
		if old != nil && old.Writer == id {
			return nil, Lease{}, fmt.Errorf("this writer (ID %s) holds the lease already: %s. If its data directory is a copy of that writer's, "+
				"delete %s from it (a new ID is made) and take over again", id, old, WriterIDFile)
		}
		nl := Lease{Writer: id, Addr: addr, Host: host, Epoch: 1, Since: time.Now().UTC()}
		if old != nil {
			nl.Epoch = old.Epoch + 1
		}
		b, _ := json.Marshal(nl)
		if old == nil {
			_, err = c.kv.Create(ctx, keyLease, b)
		} else {
			_, err = c.kv.Update(ctx, keyLease, b, rev)
		}
		if conflict(err) {
			continue // changed meanwhile: take it from whoever holds it now
		}
		if err != nil {
			return nil, Lease{}, err
		}
		return old, nl, nil
	}
}

// conflict reports whether a create or update lost to another writer's.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
