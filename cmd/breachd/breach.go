package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/client"
	"github.com/breachd/breachd/dump"
	"github.com/breachd/breachd/natsrepl"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

// target is where a corpus-changing command acts: a corpus directory
// (daemon stopped) or a running daemon's AdminService.
type target struct {
	data     string
	addr     string
	dial     client.DialOptions
	keyFile  string
	indexKey string
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.data, "data", "", "corpus directory to change directly (the daemon must not be running on it)")
	fs.StringVar(&t.addr, "addr", "", "a running daemon to go through: its admin socket (unix:///path/to/DATA/breachd.sock; the only admin path without TLS) or, with TLS and an admin key, HOST:PORT")
	fs.BoolVar(&t.dial.TLS, "tls", false, "with --addr: use TLS with the system's roots (--ca or --cert imply TLS)")
	fs.StringVar(&t.dial.CAFile, "ca", "", "with --addr: PEM CA the daemon's certificate is checked against")
	fs.StringVar(&t.dial.CertFile, "cert", "", "with --addr: PEM client certificate for mutual TLS")
	fs.StringVar(&t.dial.KeyFile, "key", "", "with --addr: PEM key of the client certificate")
	fs.StringVar(&t.keyFile, "api-key-file", "", "with --addr: file holding an API key with the admin scope (or set BREACHD_API_KEY)")
	fs.StringVar(&t.indexKey, "index-key", "", "with --data: the index key file of a keyed corpus (the daemon's privacy.index_key_file)")
}

func (t *target) valid() bool { return (t.data == "") != (t.addr == "") }

// misplaced names the flags given for the other kind of target, which
// would be ignored ("" if none): an --index-key given with --addr, say,
// would leave its user believing the daemon read it.
func (t *target) misplaced() string {
	switch {
	case t.data != "" && (t.dial.TLS || t.dial.CAFile != "" || t.dial.CertFile != "" || t.dial.KeyFile != "" || t.keyFile != ""):
		return "--tls, --ca, --cert, --key and --api-key-file are for --addr: with --data nothing is dialled"
	case t.addr != "" && t.indexKey != "":
		return "--index-key is for --data: a daemon reads its own (privacy.index_key_file)"
	}
	return ""
}

// connect returns a client of the daemon at t.addr.
func (t *target) connect() (*client.Client, *grpc.ClientConn, error) {
	var err error
	if t.dial.APIKey, err = client.ReadAPIKey(t.keyFile); err != nil {
		return nil, nil, err
	}
	conn, err := client.Dial(t.addr, t.dial)
	if err != nil {
		return nil, nil, err
	}
	return client.New(conn), conn, nil
}

// open opens the corpus at t.data for a command that changes it.
// The lookup index is not rebuilt while the command works, but once,
// before the store closes (closeOffline), so a daemon starts with it.
func (t *target) open(ctx context.Context, log *slog.Logger) (*store.Store, error) {
	if err := t.checkOwner(); err != nil {
		return nil, err
	}
	if _, err := store.MigrateLayout(t.data, log); err != nil {
		return nil, t.lockedError(err)
	}
	so := store.DefaultOptions()
	so.Logger, so.Index = log, store.IndexManual
	so.BackgroundShare = 1 // nothing to share the machine with
	if t.indexKey != "" {
		k, err := store.ReadIndexKey(t.indexKey)
		if err != nil {
			return nil, err
		}
		so.IndexKey = k
	}
	dir := store.EmailDir(t.data)
	so.Follower, so.Published = natsrepl.Follows(dir), published(dir)
	st, err := store.Open(ctx, dir, so)
	return st, t.lockedError(err)
}

// openPasswords opens the password corpus of kind k at t.data for a
// command that changes it.
func (t *target) openPasswords(ctx context.Context, k breachd.HashKind, log *slog.Logger) (*store.Passwords, error) {
	if err := t.checkOwner(); err != nil {
		return nil, err
	}
	so := store.DefaultOptions()
	so.Logger, so.Index = log, store.IndexManual
	so.BackgroundShare = 1
	dir := store.PasswordDir(t.data, k)
	so.Follower, so.Published = natsrepl.Follows(dir), published(dir)
	pw, err := store.OpenPasswords(ctx, dir, k, so)
	return pw, t.lockedError(err)
}

// service opens the email corpus at t.data, and its pair corpus if it has
// one (or withPairs: a combolist's import creates it), for a command that
// changes them; it returns their use cases and what closes them. A
// breach's accounts and pairs change together (service/pairs.go).
func (t *target) service(ctx context.Context, log *slog.Logger, withPairs bool) (*service.Service, func(), error) {
	emails, err := t.open(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	so := store.DefaultOptions()
	so.Logger = log
	so.BackgroundShare = 1
	_, statErr := os.Stat(store.PairDir(t.data))
	if !natsrepl.Follows(store.EmailDir(t.data)) && (withPairs || statErr == nil) { // a replica holds no pairs
		so.Published = published(store.PairDir(t.data))
		pairs, err := store.OpenPairs(ctx, store.PairDir(t.data), so)
		if err != nil {
			closeOffline(ctx, emails, log)
			return nil, nil, t.lockedError(err)
		}
		// A combolist's passwords are counted in the SHA-1 corpus.
		so.Published = published(store.PasswordDir(t.data, breachd.SHA1))
		pw, err := store.OpenPasswords(ctx, store.PasswordDir(t.data, breachd.SHA1), breachd.SHA1, so)
		if err != nil {
			pairs.Close()
			closeOffline(ctx, emails, log)
			return nil, nil, t.lockedError(err)
		}
		return service.New(emails, service.WithPairs(pairs), service.WithPasswords(breachd.SHA1, pw)), func() {
			for name, c := range map[string]interface{ Close() error }{"pair corpus": pairs, "SHA-1 corpus": pw} {
				if err := c.Close(); err != nil {
					log.Error("closing the "+name, "err", err)
				}
			}
			closeOffline(ctx, emails, log)
		}, nil
	}
	return service.New(emails), func() { closeOffline(ctx, emails, log) }, nil
}

// published reports whether the corpus in dir has been published to
// replicas: an offline change to it must keep what the daemon's next
// delta carries (store.Options.Published).
func published(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, natsrepl.PublishedFile))
	return err == nil
}

func (t *target) lockedError(err error) error {
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%s is in use by a running daemon: go through it with --addr instead of --data (its admin socket: --addr unix://%s)",
			t.data, t.socket())
	}
	return err
}

// socket is where a daemon serving t.data keeps its admin socket by default.
func (t *target) socket() string { return store.AdminSocket(t.data) }

// checkOwner refuses, run as root, a data directory another user owns (a
// service's, as systemd's DynamicUser and StateDirectory make it): files
// written there as root would leave the service unable to open its corpus.
func (t *target) checkOwner() error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(t.data)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return fmt.Errorf("%s belongs to uid %d, not root: a corpus written there as root could not be opened by its owner (a service's user). "+
		"Go through the running service (--addr unix://%s), or run this command as its owner (setpriv --reuid=%d --regid=%d --clear-groups breachd ...)",
		t.data, st.Uid, t.socket(), st.Uid, st.Gid)
}

// remoteError words a daemon's refusal.
func (t *target) remoteError(err error) error {
	return fmt.Errorf("daemon at %s: %s", t.addr, client.Explain(err))
}

const breachUsage = `usage: breachd breach <list|delete|update> (--data DIR | --addr unix://SOCKET|HOST:PORT [connection flags]) ...

  list                     print the catalogue: NAME, accounts, date, one breach a line
  delete NAME              remove the breach from every answer at once; accounts in no
                           other breach are deleted
  update --manifest FILE   correct the catalogue entry of the breach the manifest names
                           (every field but its accounts)

  list --kind sha1|ntlm    the releases of that password corpus instead: NAME, hashes, date
  delete --kind sha1|ntlm NAME
                           remove a password release (an older Pwned Passwords download,
                           once a newer one is imported); hashes in no other release go
  update --kind sha1|ntlm --manifest FILE
                           correct a password release's catalogue entry
`

func breachCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "delete" && args[0] != "update") {
		fmt.Fprint(stderr, breachUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("breachd breach "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t target
	t.register(fs)
	manifest := fs.String("manifest", "", "with update: the corrected breach manifest, JSON")
	kindName := fs.String("kind", "", "sha1 or ntlm: a password corpus's releases instead of the breaches of accounts")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	usage := func() error { fmt.Fprint(stderr, breachUsage); return errUsage }
	if why := t.misplaced(); why != "" {
		fmt.Fprintln(stderr, "breachd breach:", why)
		return errUsage
	}
	var k breachd.HashKind
	if *kindName != "" {
		var err error
		if k, err = breachd.ParseHashKind(*kindName); err != nil {
			return err
		}
	}
	switch {
	case !t.valid(),
		args[0] == "list" && (fs.NArg() != 0 || *manifest != ""),
		args[0] == "delete" && (fs.NArg() != 1 || *manifest != ""),
		args[0] == "update" && (fs.NArg() != 0 || *manifest == ""):
		return usage() // before opening anything
	}
	cat, done, err := t.catalogue(ctx, k, log)
	if err != nil {
		return err
	}
	defer done()
	switch args[0] {
	case "list":
		bs, err := cat.list()
		if err != nil {
			return err
		}
		for _, b := range bs {
			fmt.Fprintf(stdout, "%s\t%d\t%s\n", b.Name, b.AccountCount, b.BreachDate)
		}
	case "delete":
		name := fs.Arg(0)
		removed, version, err := cat.del(name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s%s: %d %s in no other %s removed; corpus version %d\n", cat.noun, name, removed, cat.units, cat.other, version)
	case "update":
		b, err := dump.ReadManifest(*manifest)
		if err != nil {
			return err
		}
		version, err := cat.update(b)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "updated %s%s; corpus version %d\n", cat.noun, b.Name, version)
	}
	return nil
}

// catalogue is what breach list, delete and update do at a target: to the
// breaches of accounts, or to the releases of a password corpus.
type catalogue struct {
	list   func() ([]*breachd.CatalogEntry, error)
	del    func(name string) (removed, version uint64, err error)
	update func(b breachd.Breach) (version uint64, err error)
	// How the commands word it: "" or "sha1 release "; "accounts" or
	// "hashes"; "breach" or "release".
	noun, units, other string
}

// catalogue returns the catalogue of the breaches of accounts at t (k 0)
// or of the releases of its password corpus of kind k, and what closes it.
func (t *target) catalogue(ctx context.Context, k breachd.HashKind, log *slog.Logger) (*catalogue, func(), error) {
	cat := &catalogue{units: "accounts", other: "breach"}
	if k != 0 {
		cat.noun, cat.units, cat.other = k.String()+" release ", "hashes", "release"
	}
	if t.addr != "" {
		c, conn, err := t.connect()
		if err != nil {
			return nil, nil, err
		}
		remote := func(err error) error {
			if err != nil {
				return t.remoteError(err)
			}
			return nil
		}
		cat.list = func() ([]*breachd.CatalogEntry, error) {
			var bs []client.CatalogEntry
			var err error
			if k == 0 {
				bs, _, err = c.Breaches(ctx)
			} else {
				bs, _, err = c.Releases(ctx, k)
			}
			out := make([]*breachd.CatalogEntry, len(bs))
			for i, b := range bs {
				out[i] = &breachd.CatalogEntry{Breach: breachd.Breach{Name: b.Name, BreachDate: b.BreachDate}, AccountCount: b.AccountCount}
			}
			return out, remote(err)
		}
		cat.del = func(name string) (removed, version uint64, err error) {
			if k == 0 {
				removed, version, err = c.DeleteBreach(ctx, name)
			} else {
				removed, version, err = c.DeleteRelease(ctx, k, name)
			}
			return removed, version, remote(err)
		}
		cat.update = func(b breachd.Breach) (version uint64, err error) {
			if k == 0 {
				_, version, err = c.UpdateBreach(ctx, b)
			} else {
				_, version, err = c.UpdateRelease(ctx, k, b)
			}
			return version, remote(err)
		}
		return cat, func() { conn.Close() }, nil
	}
	if k == 0 {
		if _, err := os.Stat(t.data); err != nil {
			return nil, nil, fmt.Errorf("no corpus at %s: %w", t.data, err) // never create one to list or change it
		}
		svc, done, err := t.service(ctx, log, false)
		if err != nil {
			return nil, nil, err
		}
		cat.list = func() ([]*breachd.CatalogEntry, error) {
			bs, _, err := svc.AllBreaches(ctx)
			return bs, err
		}
		cat.del = func(name string) (uint64, uint64, error) { return svc.DeleteBreach(ctx, name) }
		cat.update = func(b breachd.Breach) (uint64, error) {
			_, version, err := svc.UpdateBreach(ctx, b)
			return version, err
		}
		return cat, done, nil
	}
	if _, err := os.Stat(store.PasswordDir(t.data, k)); err != nil {
		return nil, nil, fmt.Errorf("no %s password corpus at %s: %w", k, t.data, err)
	}
	pw, err := t.openPasswords(ctx, k, log)
	if err != nil {
		return nil, nil, err
	}
	svc := service.New(nil, service.WithPasswords(k, pw))
	cat.list = func() ([]*breachd.CatalogEntry, error) {
		rs, _, err := pw.Breaches(ctx)
		return rs, err
	}
	cat.del = func(name string) (uint64, uint64, error) { return svc.DeleteRelease(ctx, k, name) }
	cat.update = func(b breachd.Breach) (uint64, error) {
		_, version, err := svc.UpdateRelease(ctx, k, b)
		return version, err
	}
	return cat, func() { closeOffline(ctx, pw, log) }, nil
}

// gc collects what interrupted imports and deletes left in a corpus
// directory (a daemon does it by itself at start).
func gc(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("breachd gc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "corpus directory (the daemon must not be running on it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: breachd gc --data DIR")
		return errUsage
	}
	t := target{data: *data}
	st, err := t.open(ctx, log)
	if err != nil {
		return err
	}
	defer closeOffline(ctx, st, log)
	cs, err := st.Collect(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "collected %d interrupted imports: %d rows deleted, %d rows rewritten, %d leftover files removed\n",
		cs.Segments, cs.Deleted, cs.Rewritten, cs.TempFiles)
	if len(cs.Misattributed) == 0 {
		return nil
	}
	// A release before segment ids were counted could give an import a
	// deleted breach's id; what is stored cannot tell those rows apart.
	for _, m := range cs.Misattributed {
		fmt.Fprintf(stderr, "breach %s answers for %d accounts, but its imports counted %d: rows of a breach deleted before this release may answer under it\n",
			m.Breach, m.Rows, m.Counted)
	}
	fmt.Fprintf(stderr, "answers for these breaches are wrong; for each, run 'breachd breach delete --data %s NAME' and import its dump again\n", *data)
	return fmt.Errorf("%d breaches answer for accounts their imports did not count", len(cs.Misattributed))
}

// offlineCorpus is a corpus an offline command opened with
// store.IndexManual.
type offlineCorpus interface {
	BuildIndex(context.Context) error
	Close() error
}

// closeOffline brings the lookup index up to date, then closes st.
func closeOffline(ctx context.Context, st offlineCorpus, log *slog.Logger) {
	if err := st.BuildIndex(ctx); err != nil && ctx.Err() == nil {
		log.Warn("building the lookup index failed; the daemon will build it at start", "err", err)
	}
	if err := st.Close(); err != nil {
		log.Error("closing the store", "err", err)
	}
}
