package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/internal/atomicfile"
)

// A data directory holds one directory per corpus, each a Badger of its own
// with its filter, lookup index and replication state, beside the API keys:
//
//	DATA/emails/            the email corpus
//	DATA/passwords-sha1/    the SHA-1 password corpus
//	DATA/passwords-ntlm/    the NTLM password corpus
//	DATA/keys.json          API keys (package auth)
//
// Releases before 2026-12 kept the email corpus at the root of DATA, beside
// the others; MigrateLayout moves it.

// EmailDir is where the email corpus lives inside a data directory.
func EmailDir(dataDir string) string { return filepath.Join(dataDir, "emails") }

// AdminSocket is where a daemon serving dataDir keeps its admin socket
// unless configured otherwise (the only admin path of a daemon without TLS):
// an absolute path, so that the gRPC target "unix://" + it works from any
// directory (gRPC reads unix://data/... as the authority "data"). Relative
// only if the working directory cannot be found.
func AdminSocket(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return filepath.Join(dataDir, adminSocketName)
}

const adminSocketName = "breachd.sock"

// PasswordDir is where the corpus of kind k lives inside a data directory.
func PasswordDir(dataDir string, k breachd.HashKind) string {
	return filepath.Join(dataDir, "passwords-"+k.String())
}

// PairDir is the pair corpus's directory in a data directory.
func PairDir(dataDir string) string { return filepath.Join(dataDir, "pairs") }

// LockDir takes the lock Badger takes on the corpus in dir, for a change
// made beside Badger (a migration, a replica's promotion): ErrLocked while
// a daemon or a command has the corpus open, and none can open it until
// unlock. Badger's lock is a flock of the directory itself (its LOCK file
// only holds the process ID). A directory that does not exist has no lock
// to take.
func LockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	return func() { d.Close() }, nil
}

// ReplicatedDirs are the directories of the corpora a writer publishes to
// its replicas: the email corpus, the pair corpus and each password
// corpus (the watchlists stay the writer's).
func ReplicatedDirs(dataDir string) []string {
	dirs := []string{EmailDir(dataDir), PairDir(dataDir)}
	for _, k := range breachd.HashKinds {
		dirs = append(dirs, PasswordDir(dataDir, k))
	}
	return dirs
}

const migrating = "emails.migrating"

// legacyFile reports whether a name at the root of a data directory is one
// of the email corpus's files in the old layout: Badger's, and breachd's
// own beside them (filter, index, replication state, temporary files).
func legacyFile(name string) bool {
	switch name {
	case "MANIFEST", "KEYREGISTRY", "DISCARD", "LOCK":
		return true
	}
	for _, ext := range []string{".sst", ".vlog", ".mem"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	// The data directory's own files (the admin socket, a writer's ID)
	// share the prefix but are no corpus's.
	return strings.HasPrefix(name, "breachd.") && !slices.Contains(dataDirFiles, name)
}

// dataDirFiles are breachd's files at the root of the data directory
// beside the corpora: the admin socket (cmd/breachd) and a writer's ID
// (natsrepl.WriterIDFile).
var dataDirFiles = []string{adminSocketName, "breachd.writer-id"}

// MigrateLayout finishes a rekey a crash cut short (rekey.go), and moves an
// email corpus kept at the root of dataDir (the layout before 2026-12)
// into EmailDir(dataDir), and reports whether it moved anything. Every step can be cut short by a crash and is finished by
// the next call: the files move, one rename each, into a directory that
// takes the corpus's name in one last rename. It refuses while a process
// holds the corpus (Badger's lock).
func MigrateLayout(dataDir string, log *slog.Logger) (bool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(dataDir); err == nil {
		if err := finishRekey(dataDir, log); err != nil {
			return false, err
		}
	}
	entries, err := os.ReadDir(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var legacy []string
	started := false
	for _, e := range entries {
		switch {
		case e.Name() == migrating && e.IsDir():
			started = true
		case !e.IsDir() && legacyFile(e.Name()):
			legacy = append(legacy, e.Name())
		}
	}
	if len(legacy) == 0 && !started {
		return false, nil
	}
	if _, err := os.Stat(EmailDir(dataDir)); err == nil {
		return false, fmt.Errorf("%s holds an email corpus both at its root (the layout before 2026-12) and in %s: move one away",
			dataDir, EmailDir(dataDir))
	}
	// Badger's lock: a daemon of an earlier release serving the corpus at
	// the root holds it.
	unlock, err := LockDir(dataDir)
	if err != nil {
		return false, err
	}
	defer unlock()
	tmp := filepath.Join(dataDir, migrating)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return false, err
	}
	log.Warn("moving the email corpus from the root of the data directory into its own directory (the layout since 2026-12)",
		"dir", dataDir, "files", len(legacy))
	for _, name := range legacy {
		if err := os.Rename(filepath.Join(dataDir, name), filepath.Join(tmp, name)); err != nil {
			return false, fmt.Errorf("migrate %s: %w", name, err)
		}
		reach("migrate-moved")
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, EmailDir(dataDir)); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	return true, atomicfile.SyncDir(dataDir)
}
