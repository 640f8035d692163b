package main

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breachd/breachd/synth"
)

// plainCorpus imports a SegaPass breach of about 12,000 accounts (synth
// seed) offline into tmp/data, plain, and returns the directory, the
// breach's files, 10,000 of its accounts and 10,000 addresses of no
// breach (seed+1).
func plainCorpus(t *testing.T, tmp string, seed uint64) (data string, sega corpusFiles, known, unknown []string) {
	t.Helper()
	data = filepath.Join(tmp, "data")
	sega = writeCorpus(t, tmp, "SegaPass", synth.Options{Seed: seed, Records: 12000})
	outsiders := writeCorpus(t, tmp, "Outsiders", synth.Options{Seed: seed + 1, Records: 12000, Domain: "never.example"}).accounts
	runOK(t, "import", "--data", data, "--manifest", sega.manifest, sega.dump)
	return data, sega, sega.accounts[:min(10000, len(sega.accounts))], outsiders[:min(10000, len(outsiders))]
}

// TestKeyedDaemon: a corpus imported plain, then keyed by 'breachd keys
// index create' and 'breachd rekey': the daemon refuses it without the key
// file, saying what to do; with it (privacy.index_key_file), 10,000 known
// and 10,000 unknown addresses answer as before through a bulk stream; an
// import through the daemon and offline commands work keyed; and the data
// directory holds no 8-byte window of the digest of any of 1,000 known
// addresses, which the plain directory did.
func TestKeyedDaemon(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	data, _, known, unknown := plainCorpus(t, tmp, 11)
	windows := map[[8]byte]bool{}
	for _, e := range known[:1000] {
		d := sha256.Sum256([]byte(e))
		for i := 0; i+8 <= len(d); i++ {
			windows[[8]byte(d[i:i+8])] = true
		}
	}
	holding := func() []string {
		var files []string
		filepath.WalkDir(data, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Type()&fs.ModeSocket != 0 {
				return err
			}
			b, _ := os.ReadFile(path)
			for i := 0; i+8 <= len(b); i++ {
				if windows[[8]byte(b[i:i+8])] {
					files = append(files, path)
					break
				}
			}
			return nil
		})
		return files
	}
	if len(holding()) == 0 {
		t.Fatal("the plain data directory holds no window of a known digest: the search cannot fail")
	}

	keyFile := filepath.Join(tmp, "index.key")
	if out := runOK(t, "keys", "index", "create", "--out", keyFile); !strings.Contains(out, "index key ") {
		t.Fatalf("keys index create: %s", out)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"keys", "index", "create", "--out", keyFile}, &stdout, &stderr); err == nil {
		t.Fatal("keys index create overwrote a key file")
	}
	if out := runOK(t, "rekey", "--data", data, "--index-key", keyFile); !strings.Contains(out, "email corpus keyed") {
		t.Fatalf("rekey: %s", out)
	}
	if files := holding(); len(files) > 0 {
		t.Fatalf("the keyed data directory holds windows of known digests: %v", files)
	}

	// Without the key, serve refuses, and says why.
	err := run(t.Context(), []string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "privacy.index_key_file") {
		t.Fatalf("serve without the index key = %v", err)
	}
	// Offline commands take --index-key.
	if out := runOK(t, "breach", "list", "--data", data, "--index-key", keyFile); !strings.Contains(out, "SegaPass") {
		t.Fatalf("breach list --index-key: %s", out)
	}

	cfg := filepath.Join(tmp, "breachd.yaml")
	os.WriteFile(cfg, []byte("privacy:\n  index_key_file: "+keyFile+"\n"), 0o600)
	d := startDaemon(t, data, "--config", cfg)
	conn := dial(t, d.addr)
	wantAll(t, conn, "known, keyed", known, "SegaPass")
	wantAll(t, conn, "unknown, keyed", unknown)

	// An import through the daemon is keyed too.
	other := writeCorpus(t, tmp, "Other", synth.Options{Seed: 13, Records: 2000, Domain: "other.example"})
	runOK(t, "import", "--addr", d.admin, "--manifest", other.manifest, other.dump)
	wantAll(t, conn, "imported keyed", other.accounts, "Other")
	d.stop(t)
	if files := holding(); len(files) > 0 {
		t.Fatalf("after serving and an import, the data directory holds windows of known digests: %v", files)
	}
}
