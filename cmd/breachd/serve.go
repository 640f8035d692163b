package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/store"
)

type serveConfig struct {
	data            string
	addr            string
	admin           bool
	fpr             float64
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("breachd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := serveConfig{logLevel: slog.LevelInfo}
	fs.StringVar(&c.data, "data", "", "corpus directory (required)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7355", "listen address; keep it on loopback until the API has authentication")
	fs.BoolVar(&c.admin, "admin", true, "serve the AdminService (imports through the daemon); -admin=false switches it off")
	fs.Float64Var(&c.fpr, "fpr", 0.001, "Bloom filter target false-positive rate")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long calls in flight may take to finish at shutdown")
	fs.Var(levelFlag{&c.logLevel}, "log-level", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.data == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: breachd serve --data DIR [--addr HOST:PORT] [flags]")
		fs.PrintDefaults()
		return c, errUsage
	}
	return c, nil
}

func serve(ctx context.Context, c serveConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	st, err := store.Open(c.data, store.Options{Logger: log, FalsePositiveRate: c.fpr})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing store failed", "err", err)
		}
	}()
	stats := st.Stats()
	log.Info("corpus opened", "breaches", stats.Breaches, "keys", stats.Keys, "corpus_version", stats.Version,
		"duration", time.Since(start))

	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	if ip, ok := lis.Addr().(*net.TCPAddr); ok && !ip.IP.IsLoopback() {
		log.Warn("listening beyond loopback: the API has no authentication yet", "admin", c.admin)
	}
	srv := server.New(st, server.Options{Logger: log, Admin: c.admin})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving", "addr", lis.Addr().String(), "admin", c.admin)
	fmt.Fprintf(stdout, "breachd: serving %d breaches (%d accounts, corpus version %d) on %s\n",
		stats.Breaches, stats.Keys, stats.Version, lis.Addr())

	select {
	case err := <-served: // the listener failed
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	srv.Shutdown(sctx)
	<-served
	log.Info("stopped")
	return nil
}
