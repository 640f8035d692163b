package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"
	"time"

	"github.com/breachd/breachd/auth"
	"github.com/breachd/breachd/certs"
	"github.com/breachd/breachd/daemon"
	"github.com/breachd/breachd/store"
)

func parseServe(args []string, stderr io.Writer) (config, error) {
	c, err := loadProcessConfig("breachd serve", args, stderr)
	if err != nil {
		return c, err
	}
	return c, c.validate()
}

// daemonConfig is the daemon's configuration built from c (validated).
func (c *config) daemonConfig(log *slog.Logger) (daemon.Config, error) {
	d := daemon.DefaultConfig()
	d.Data, d.Addr, d.Admin, d.MetricsAddr, d.MetricsWebConfig = c.Data, c.Addr, c.Admin, c.MetricsAddr, c.MetricsWebConfig
	d.HTTPAddr, d.OpenPublic, d.HTTPServer = c.HTTP.Addr, c.HTTP.OpenPublic, c.HTTP.Server
	d.AdminSocket, d.AdminSocketGroup = c.AdminSocket, c.AdminSocketGroup
	if d.AdminSocket == "" && c.Admin && c.TLS.Cert == "" {
		// Without TLS admin calls go only through the socket: one by
		// default, beside the corpus, so that 'breachd import --addr
		// unix://DATA/breachd.sock' works out of the box.
		d.AdminSocket = store.AdminSocket(c.Data)
	}
	if d.AdminSocket != "" {
		// Absolute, so that the unix:// target printed for it works from
		// anywhere (gRPC reads unix://PATH as an absolute path).
		abs, err := filepath.Abs(d.AdminSocket)
		if err != nil {
			return d, fmt.Errorf("admin_socket: %w", err)
		}
		d.AdminSocket = abs
	}
	d.ShutdownTimeout = time.Duration(c.ShutdownTimeout)
	d.Emails = c.storeOptions()
	if c.Privacy.IndexKeyFile != "" {
		k, err := store.ReadIndexKey(c.Privacy.IndexKeyFile)
		if err != nil {
			return d, fmt.Errorf("privacy.index_key_file: %w", err)
		}
		d.Emails.IndexKey = k
	}
	d.Emails.Private, d.Emails.BucketMin = c.Privacy.PrivateLookups, c.Privacy.BucketMin
	d.Passwords = c.storeOptions()
	d.Passwords.MemTableSize = daemon.DefaultConfig().Passwords.MemTableSize
	d.Limits = c.limits()
	d.ImportIdleTimeout = time.Duration(c.Import.IdleTimeout)
	if c.TLS.Cert != "" {
		d.TLS = &daemon.TLS{Cert: c.TLS.Cert, Key: c.TLS.Key, ClientCA: c.TLS.ClientCA, ClientAuth: certs.ClientAuth(c.TLS.ClientAuth)}
	}
	d.Auth = daemon.Auth{APIKeys: c.Auth.APIKeys, KeysReload: time.Duration(c.Auth.KeysReload), Reflection: c.Auth.Reflection}
	d.Auth.Identities = c.identities()
	d.Quota = daemon.Quota{Default: c.quotaLimits(), MaxStreams: c.Quota.MaxStreams, MaxStreamWait: time.Duration(c.Quota.MaxStreamWait),
		Anonymous: c.anonymousLimits(), MaxWatches: c.Quota.MaxWatches, MaxWatchesPerAddress: c.Quota.MaxWatchesAddr}
	d.Network = c.network()
	var err error
	if d.TrustedProxies, err = c.trustedProxies(); err != nil {
		return d, err
	}
	if d.Policy, err = c.policies(); err != nil {
		return d, err
	}
	if d.Watch.Webhooks, err = c.webhooks(); err != nil {
		return d, err
	}
	d.Watch.RetryFor, d.Watch.Retention = time.Duration(c.Watch.RetryFor), time.Duration(c.Watch.Retention)
	d.Replication.Publish, d.Replication.Follow, d.Replication.Advertise = c.Replication.Publish, c.Replication.Follow, c.Replication.Advertise
	if url := c.Replication.Publish + c.Replication.Follow; url != "" {
		o, err := c.natsOptions(url, log)
		if err != nil {
			return d, err
		}
		d.Replication.NATS = o
	}
	return d, nil
}

// identities are the client-certificate identities of c (validated).
func (c *config) identities() []auth.CertIdentity {
	var ids []auth.CertIdentity
	for _, m := range c.Auth.MTLSIdentities {
		ci, _ := m.principal() // validated
		ids = append(ids, ci)
	}
	return ids
}

// serve runs the daemon c configures until ctx is done. On SIGHUP it
// re-reads the TLS files and the API keys, and reload's configuration
// (the same sources as at start): its client-certificate identities take
// effect at once; other changed settings are named and wait for a restart.
func serve(ctx context.Context, c config, reload func() (config, error), stdout io.Writer, log *slog.Logger) error {
	dc, err := c.daemonConfig(log)
	if err != nil {
		return err
	}
	d, err := daemon.Start(ctx, dc, log)
	if err != nil {
		return keyError(err)
	}
	note := ""
	if a := d.HTTPAddr(); a != "" {
		note += fmt.Sprintf(", HTTP API on %s://%s", d.HTTPScheme(), a)
	}
	if p := d.AdminSocket(); p != "" {
		note += ", admin on unix://" + p
	}
	if a := d.MetricsAddr(); a != "" {
		scheme := "http"
		if c.MetricsWebConfig != "" {
			scheme = "https" // or http, as the web configuration says; both need its credentials
		}
		note += fmt.Sprintf(", metrics on %s://%s/metrics", scheme, a)
	}
	stats := d.Emails().Stats()
	switch {
	case c.Replication.Follow != "":
		fmt.Fprintf(stdout, "breachd: read replica on %s%s, following %s; it serves once it holds a whole corpus version (it holds version %d)\n",
			d.Addr(), note, c.Replication.Follow, stats.Version)
	case c.Replication.Publish != "":
		note += ", publishing to " + c.Replication.Publish
		fallthrough
	default:
		fmt.Fprintf(stdout, "breachd: serving %d breaches (%d accounts, corpus version %d) on %s%s\n",
			stats.Breaches, stats.Keys, stats.Version, d.Addr(), note)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-d.Failed():
			return errors.Join(err, d.Shutdown(context.Background()))
		case <-hup:
			if err := d.Reload(); err != nil {
				log.Error("reload on SIGHUP failed; keeping what was in use", "err", err)
			}
			c = reloadConfig(d, c, reload, log)
		case <-ctx.Done():
			return d.Shutdown(context.Background())
		}
	}
}

// reloadConfig reads the configuration again and applies what a running
// daemon can take (the client-certificate identities); it returns the
// configuration now in effect.
func reloadConfig(d *daemon.Daemon, c config, reload func() (config, error), log *slog.Logger) config {
	nc, err := reload()
	if err != nil {
		log.Error("re-reading the configuration on SIGHUP failed; keeping the one in use", "err", err)
		return c
	}
	if !reflect.DeepEqual(nc.Auth.MTLSIdentities, c.Auth.MTLSIdentities) {
		if err := d.SetIdentities(nc.identities()); err != nil {
			log.Error("the new auth.mtls_identities were refused; keeping those in use", "err", err)
			return c
		}
		log.Info("client-certificate identities reloaded", "identities", len(nc.Auth.MTLSIdentities))
	}
	applied := c
	applied.Auth.MTLSIdentities = nc.Auth.MTLSIdentities
	if !reflect.DeepEqual(applied, nc) {
		log.Warn("the configuration changed beyond auth.mtls_identities: those changes take effect when the daemon restarts")
	}
	return applied
}
