package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/atomicfile"
)

// KeysFile is the name of the API-key file in a data directory.
const KeysFile = "keys.json"

// KeyInfo is an API key at rest: never the key itself, only its hash.
type KeyInfo struct {
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the key
	Scopes  []Scope   `json:"scopes"`
	Rate    float64   `json:"rate,omitempty"`  // per second; 0: the daemon's default
	Burst   int       `json:"burst,omitempty"` // 0: the daemon's default
	Created time.Time `json:"created"`
}

type keysDoc struct {
	Version int       `json:"version"`
	Keys    []KeyInfo `json:"keys"`
}

var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// keyPrefix marks breachd API keys, so that a leaked one is recognisable
// (secret scanners match on such prefixes).
const keyPrefix = "bdk_"

// CreateKey adds a key for principal name to dir's key file and returns the
// key, which is stored nowhere: only its hash is kept. A name already in use
// is refused; revoke it first.
func CreateKey(dir string, name string, scopes []Scope, rate float64, burst int) (string, error) {
	switch {
	case !keyName.MatchString(name):
		return "", breachd.Errorf(breachd.ErrInvalidArgument, "key name %s: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", breachd.Quote(name))
	case len(scopes) == 0:
		return "", breachd.Errorf(breachd.ErrInvalidArgument, "key %s: no scopes: give at least one of check, bulk, admin", name)
	case rate < 0 || burst < 0:
		return "", breachd.Errorf(breachd.ErrInvalidArgument, "key %s: rate and burst must be 0 (the daemon's default) or more", name)
	case (rate > 0) != (burst > 0):
		return "", breachd.Errorf(breachd.ErrInvalidArgument, "key %s: give both rate and burst, or neither", name)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := hashKey(key)
	err := update(dir, func(keys []KeyInfo) ([]KeyInfo, error) {
		if slices.ContainsFunc(keys, func(k KeyInfo) bool { return k.Name == name }) {
			return nil, breachd.Errorf(breachd.ErrFailedPrecondition, "a key named %s exists: revoke it first, or choose another name", name)
		}
		return append(keys, KeyInfo{Name: name, SHA256: hex.EncodeToString(h[:]), Scopes: scopes, Rate: rate, Burst: burst,
			Created: time.Now().UTC().Truncate(time.Second)}), nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// RevokeKey removes the key of principal name.
func RevokeKey(dir, name string) error {
	return update(dir, func(keys []KeyInfo) ([]KeyInfo, error) {
		i := slices.IndexFunc(keys, func(k KeyInfo) bool { return k.Name == name })
		if i < 0 {
			return nil, breachd.Errorf(breachd.ErrNotFound, "no key named %s", breachd.Quote(name))
		}
		return slices.Delete(keys, i, i+1), nil
	})
}

// ListKeys returns the keys of dir, ordered by name.
func ListKeys(dir string) ([]KeyInfo, error) {
	doc, err := readKeys(filepath.Join(dir, KeysFile))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(doc.Keys, func(a, b KeyInfo) int { return strings.Compare(a.Name, b.Name) })
	return doc.Keys, nil
}

func readKeys(path string) (keysDoc, error) {
	var doc keysDoc
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return keysDoc{Version: 1}, nil
	}
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Version != 1 {
		return doc, fmt.Errorf("%s: version %d, want 1", path, doc.Version)
	}
	return doc, nil
}

// update changes the key file under an exclusive lock, so that two
// 'breachd keys' commands never lose each other's change, and replaces it
// atomically, so that a daemon never reads half a file.
func update(dir string, fn func([]KeyInfo) ([]KeyInfo, error)) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, KeysFile+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := giveToDirOwner(dir, lock); err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	path := filepath.Join(dir, KeysFile)
	doc, err := readKeys(path)
	if err != nil {
		return err
	}
	if doc.Keys, err = fn(doc.Keys); err != nil {
		return err
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort() // nothing after Commit
	if err := giveToDirOwner(dir, f); err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return err
	}
	return f.Commit()
}

// giveToDirOwner makes f, written by root (an operator managing a systemd
// service with a dynamic user), the data directory's owner's, or the
// daemon could not read it (the key file) or the next command as that user
// could not lock it (the lock file).
func giveToDirOwner(dir string, f interface{ Chown(uid, gid int) error }) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return f.Chown(int(st.Uid), int(st.Gid))
	}
	return nil
}

// Keyring is a running daemon's view of the key file: hash to principal,
// replaced whole when the file changes.
type Keyring struct {
	path  string
	log   *slog.Logger
	index atomic.Pointer[map[[32]byte]*Principal]

	mu    sync.Mutex // guards stamp
	stamp fileStamp  // of the file last read

	onReload atomic.Pointer[func()]
}

// OnReload makes Watch and Reload call fn after each change of the keys
// they load (the guard ends the streams of revoked keys there). fn must
// not block for long.
func (k *Keyring) OnReload(fn func()) { k.onReload.Store(&fn) }

type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

// OpenKeyring reads dir's key file (none is an empty keyring).
func OpenKeyring(dir string, log *slog.Logger) (*Keyring, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{path: filepath.Join(dir, KeysFile), log: log}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// Reload re-reads the key file if it changed since the last read, and
// reports whether it did.
func (k *Keyring) Reload() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := stampOf(k.path)
	if err != nil {
		return false, err
	}
	if k.index.Load() != nil && st == k.stamp {
		return false, nil
	}
	doc, err := readKeys(k.path)
	if err != nil {
		return false, err
	}
	index := make(map[[32]byte]*Principal, len(doc.Keys))
	for _, info := range doc.Keys {
		h, err := hex.DecodeString(info.SHA256)
		if err != nil || len(h) != 32 {
			return false, fmt.Errorf("%s: key %s has a malformed hash", k.path, breachd.Quote(info.Name))
		}
		index[[32]byte(h)] = &Principal{Name: info.Name, Scopes: info.Scopes, Rate: info.Rate, Burst: info.Burst, Via: "api-key", key: [32]byte(h)}
	}
	k.index.Store(&index)
	k.stamp = st
	if fn := k.onReload.Load(); fn != nil {
		(*fn)()
	}
	return true, nil
}

func (k *Keyring) lookup(h [32]byte) *Principal { return (*k.index.Load())[h] }

// Len returns the number of keys.
func (k *Keyring) Len() int { return len(*k.index.Load()) }

// Names reports whether a key identifies the principal name.
func (k *Keyring) Names(name string) bool {
	for _, p := range *k.index.Load() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Watch re-reads the key file every interval until ctx is done, so that a
// created or revoked key takes effect within that time. A file that cannot
// be read leaves the keys as they were, and is logged.
func (k *Keyring) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := k.Reload()
		switch {
		case err != nil:
			k.log.Error("reading the API key file failed; keeping the keys as they were", "path", k.path, "err", err)
		case changed:
			k.log.Info("API keys reloaded", "keys", k.Len())
		}
	}
}
