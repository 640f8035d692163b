package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/breachd/breachd"
)

// A keyed index (issue 24): with an index key, what the email corpus
// stores for an account is a keyed function of its digest, never the digest.
// The keyed form is SHA-256 over a 64-byte block derived from the key and
// then the digest: the block's state is computed once, so keying a digest
// is one SHA-256 compression from that secret state (the compression
// function keyed through its chaining value, as inside HMAC, whose outer
// pass adds nothing for inputs of fixed length). HMAC-SHA256 took 2.5 to
// 3 times a plain CheckStream batch's daemon time; this, see
// BenchmarkKeyedCheckRatio.
//
// Every digest that comes in (an import's, a lookup's, a batch's) is keyed
// on the way in, so the rows, the Bloom filter, the lookup index, the
// backups replicas apply and everything else downstream hold only keyed
// values; answers do not change. Without the key the data directory is
// useless for testing addresses offline: a guess cannot be keyed.
//
// The corpus records the key's id (keyIndexKeyID), never the key, and
// refuses to open without the key it was keyed with, or with another; a
// corpus of plain digests with a key given is refused too (breachd rekey
// converts it). A key cannot be rotated from the keyed rows: that needs
// the original dumps, by design.

// IndexKeySize is the bytes of an index key.
const IndexKeySize = 32

// keyIndexKeyID records the id of the key a corpus is keyed with.
var keyIndexKeyID = []byte("mindex_key_id")

// IndexKey is a data directory's index key.
type IndexKey struct {
	id    string
	state []byte    // SHA-256's state after the key's block (encoding.BinaryMarshaler)
	hs    sync.Pool // *keyer
	seal  cipher.AEAD
	// private evaluates the OPRF and encrypts buckets (private.go).
	private *privateKey
}

func newIndexKey(secret []byte) (*IndexKey, error) {
	if len(secret) != IndexKeySize {
		return nil, fmt.Errorf("an index key is %d bytes, not %d", IndexKeySize, len(secret))
	}
	block := sha512.Sum512(append([]byte("breachd index key block v1\x00"), secret...))
	h := sha256.New()
	h.Write(block[:]) // one whole block: the state holds nothing buffered
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	k := &IndexKey{state: state}
	k.hs.New = func() any {
		h := sha256.New()
		return &keyer{h: h, un: h.(encoding.BinaryUnmarshaler)}
	}
	sk := sha256.Sum256(append([]byte("breachd watchlist seal v1\x00"), secret...))
	aesBlock, err := aes.NewCipher(sk[:])
	if err != nil {
		return nil, err
	}
	if k.seal, err = cipher.NewGCM(aesBlock); err != nil {
		return nil, err
	}
	if k.private, err = newPrivateKey(secret); err != nil {
		return nil, err
	}
	id := hmac.New(sha256.New, secret)
	id.Write([]byte("breachd index key id v1"))
	k.id = hex.EncodeToString(id.Sum(nil)[:8])
	return k, nil
}

// ID names the key (a function of it that reveals nothing of it), for
// records and messages.
func (k *IndexKey) ID() string { return k.id }

// keyer is a pooled SHA-256 with room for one digest in and one out:
// what is passed to hash.Hash's methods escapes, so Key keys a copy held
// here, and a lookup on a keyed corpus allocates nothing.
type keyer struct {
	h   hash.Hash
	un  encoding.BinaryUnmarshaler
	in  breachd.Digest
	out [sha256.Size]byte
}

// key sets the hash to the key's state and hashes p into sum's room.
func (ky *keyer) key(state, p, sum []byte) []byte {
	if err := ky.un.UnmarshalBinary(state); err != nil {
		panic(err) // a state MarshalBinary made: cannot fail
	}
	ky.h.Write(p)
	return ky.h.Sum(sum)
}

// Key returns the keyed form of digest d.
func (k *IndexKey) Key(d breachd.Digest) breachd.Digest {
	ky := k.hs.Get().(*keyer)
	ky.in = d
	out := breachd.Digest(ky.key(k.state, ky.in[:], ky.out[:0]))
	k.hs.Put(ky)
	return out
}

// sealDigest encrypts d under the key (AES-256-GCM, a random nonce first),
// for a keyed corpus that must still name an account (a watchlist's
// events).
func (k *IndexKey) sealDigest(d []byte) []byte {
	nonce := make([]byte, k.seal.NonceSize(), k.seal.NonceSize()+len(d)+k.seal.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return k.seal.Seal(nonce, nonce, d, nil)
}

// openDigest decrypts what sealDigest made.
func (k *IndexKey) openDigest(v []byte) ([]byte, error) {
	n := k.seal.NonceSize()
	if len(v) < n {
		return nil, fmt.Errorf("%w: a sealed digest of %d bytes", ErrCorrupt, len(v))
	}
	d, err := k.seal.Open(nil, v[:n], v[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: a sealed digest does not open with the index key", ErrCorrupt)
	}
	return d, nil
}

// keyPacked appends the keyed forms of the digests packed back to back in
// packed to dst.
func (k *IndexKey) keyPacked(dst, packed []byte) []byte {
	ky := k.hs.Get().(*keyer)
	for i := 0; i+breachd.DigestSize <= len(packed); i += breachd.DigestSize {
		dst = ky.key(k.state, packed[i:i+breachd.DigestSize], dst)
	}
	k.hs.Put(ky)
	return dst
}

// GenerateIndexKey writes a new random index key to path, which must not
// exist, readable by its owner only.
func GenerateIndexKey(path string) (*IndexKey, error) {
	secret := make([]byte, IndexKeySize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(secret))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return newIndexKey(secret)
}

// ReadIndexKey reads an index key file (GenerateIndexKey's: the key in
// hex on one line).
func ReadIndexKey(path string) (*IndexKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("index key: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) != IndexKeySize {
		return nil, fmt.Errorf("index key %s: not %d bytes in hex, as 'breachd keys index create' writes", path, IndexKeySize)
	}
	return newIndexKey(secret)
}

// ErrIndexKey says that a corpus and the index key given do not go together.
var ErrIndexKey = breachd.NewError(breachd.ErrFailedPrecondition, "index key")

// indexKeyID returns the id of the key the corpus is keyed with ("" for
// plain digests).
func indexKeyID(db *badger.DB) (string, error) {
	var id string
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyIndexKeyID)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		id = string(v)
		return err
	})
	return id, err
}

// checkIndexKey refuses a corpus at version whose keying does not match
// the key in its options; an empty corpus opened with a key is keyed from
// now on (a replica's, by its writer's first backup).
func (c *corpus) checkIndexKey(version uint64) error {
	key := c.opts.IndexKey
	id, err := indexKeyID(c.db)
	if err != nil {
		return classify("read index key id", err)
	}
	switch {
	case id == "" && key == nil:
		return nil
	case id != "" && key == nil:
		return fmt.Errorf("%w: the %s corpus in %s is keyed (index key %s): start breachd with privacy.index_key_file naming that key's file; without it no account can be looked up",
			ErrIndexKey, c.kind.name, c.dir, id)
	case id != "" && id != key.ID():
		return fmt.Errorf("%w: the %s corpus in %s is keyed with index key %s, and the key file given holds key %s: give the key it was keyed with",
			ErrIndexKey, c.kind.name, c.dir, id, key.ID())
	case id != "":
		return nil
	case c.opts.Follower && version == 0:
		return nil // its keying comes with its writer's first backup, checked then
	case version > 0 || c.opts.Follower:
		if c.opts.Follower {
			// A replica takes its keying from its writer's backups.
			return fmt.Errorf("%w: this replica's %s corpus in %s holds plain digests (its writer's are not keyed), and an index key is given: remove privacy.index_key_file, or key the writer's corpus",
				ErrIndexKey, c.kind.name, c.dir)
		}
		return fmt.Errorf("%w: the %s corpus in %s holds plain digests: convert it with 'breachd rekey --data DATA --index-key FILE' (offline), or start without privacy.index_key_file",
			ErrIndexKey, c.kind.name, c.dir)
	}
	// A new corpus: keyed from its first row.
	err = c.db.Update(func(txn *badger.Txn) error { return txn.Set(keyIndexKeyID, []byte(key.ID())) })
	if err == nil {
		err = c.db.Sync()
	}
	if err == nil {
		c.log.Info("corpus keyed", "index_key", key.ID())
	}
	return classify("record index key id", err)
}

// Keyed reports whether the corpus stores keyed digests.
func (c *corpus) Keyed() bool { return c.opts.IndexKey != nil }
