package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ClientAuth says what a configured client CA asks of clients.
type ClientAuth string

const (
	// RequireClientCert: every client presents a certificate the CA signed.
	RequireClientCert ClientAuth = "require"
	// VerifyIfGiven: a certificate, if presented, must verify; clients may
	// instead authenticate with an API key.
	VerifyIfGiven ClientAuth = "verify-if-given"
)

// Files names the PEM files.
type Files struct {
	Cert, Key string
	ClientCA  string     // optional: turns on mutual TLS
	Auth      ClientAuth // with ClientCA; default RequireClientCert
}

// Reloader serves the current certificate and client CA.
type Reloader struct {
	files Files
	log   *slog.Logger
	cert  atomic.Pointer[tls.Certificate]
	pool  atomic.Pointer[x509.CertPool]
	loads atomic.Uint64
	// settle is how long Watch waits after a change before it reloads, so
	// that files written together load as one (200ms; tests set 0).
	settle time.Duration

	mu   sync.Mutex // guards last
	last []byte     // the certificate chain and CA last loaded, to log only changes
}

// Load reads the files once; it fails if they do not make a usable pair.
func Load(f Files, log *slog.Logger) (*Reloader, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	switch f.Auth {
	case "":
		f.Auth = RequireClientCert
	case RequireClientCert, VerifyIfGiven:
	default:
		return nil, fmt.Errorf("client auth %q: want %q or %q", f.Auth, RequireClientCert, VerifyIfGiven)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: f, log: log, settle: 200 * time.Millisecond}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again and swaps them in; on error the ones in use stay.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.files.Cert, r.files.Key, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if err := usable(cert.Leaf, time.Now()); err != nil {
		return fmt.Errorf("TLS certificate %s: %w", r.files.Cert, err)
	}
	var pool *x509.CertPool
	if r.files.ClientCA != "" {
		pem, err := os.ReadFile(r.files.ClientCA)
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA %s: no PEM certificate in it", r.files.ClientCA)
		}
	}
	r.cert.Store(&cert)
	r.pool.Store(pool)
	r.loads.Add(1)
	var seen []byte
	for _, der := range cert.Certificate {
		seen = append(seen, der...)
	}
	if r.files.ClientCA != "" {
		pem, _ := os.ReadFile(r.files.ClientCA)
		seen = append(seen, pem...)
	}
	r.mu.Lock()
	same := bytes.Equal(seen, r.last)
	r.last = seen
	r.mu.Unlock()
	if same {
		return nil
	}
	attrs := []any{"cert", r.files.Cert}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	r.log.Info("TLS certificate loaded", attrs...)
	return nil
}

// usable refuses a server certificate that every client would refuse:
// expired, not yet valid, a CA's, or not for server authentication. (The
// key's match is checked by tls.X509KeyPair.)
func usable(leaf *x509.Certificate, now time.Time) error {
	switch {
	case leaf == nil:
		return errors.New("its first certificate cannot be parsed")
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("not valid before %s (the clock says %s)", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return fmt.Errorf("expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case leaf.IsCA:
		return errors.New("it is a certificate authority's certificate, not a server's: issue a server certificate from it")
	case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return errors.New("its extended key usage does not include server authentication (serverAuth)")
	}
	return nil
}

// NotAfter is when the certificate in use expires.
func (r *Reloader) NotAfter() time.Time { return r.cert.Load().Leaf.NotAfter }

// Loads counts successful loads (1 after Load).
func (r *Reloader) Loads() uint64 { return r.loads.Load() }

// ServerConfig returns a TLS configuration that always uses the current
// certificate and client CA.
func (r *Reloader) ServerConfig() *tls.Config { return r.serverConfig("h2") }

// HTTPServerConfig is ServerConfig for an HTTP listener: HTTP/2 or 1.1.
func (r *Reloader) HTTPServerConfig() *tls.Config { return r.serverConfig("h2", "http/1.1") }

// HTTP1ServerConfig is ServerConfig for an HTTP listener whose server
// speaks HTTP/1.1 only (fasthttp): offered h2, a client would speak it.
func (r *Reloader) HTTP1ServerConfig() *tls.Config { return r.serverConfig("http/1.1") }

func (r *Reloader) serverConfig(protos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*r.cert.Load()},
			NextProtos:   protos,
		}
		if pool := r.pool.Load(); pool != nil {
			c.ClientCAs = pool
			c.ClientAuth = tls.RequireAndVerifyClientCert
			if r.files.Auth == VerifyIfGiven {
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
		}
		return c, nil
	}
	return base
}

// Watch reloads when anything changes in the directories of the files,
// until ctx is done. Changes that come together (a secret update writes
// several files) are taken as one after a short pause.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dirs, names := map[string]bool{}, map[string]bool{}
	for _, f := range []string{r.files.Cert, r.files.Key, r.files.ClientCA} {
		if f != "" {
			dirs[filepath.Dir(f)] = true
			names[filepath.Clean(f)] = true
		}
	}
	// A change concerns us if it touches one of the files, or is
	// Kubernetes swapping the "..data" symlink the files point through.
	ours := func(name string) bool {
		return names[filepath.Clean(name)] || strings.HasPrefix(filepath.Base(name), "..")
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ours(ev.Name) {
				pending = time.After(r.settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching TLS files failed", "err", err)
		case <-pending:
			pending = nil
			if err := r.Reload(); err != nil {
				r.log.Error("reloading TLS files failed; keeping the certificate in use", "err", err)
			}
		}
	}
}
