package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/server"
	"github.com/breachd/breachd/service"
	"github.com/breachd/breachd/store"
)

type serveConfig struct {
	data            string
	addr            string
	admin           bool
	store           store.Options
	limits          server.Limits
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

// serveFlags names the flag behind each option, for error messages.
var serveFlags = map[string]string{
	"FalsePositiveRate": "--fpr",
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("breachd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := serveConfig{logLevel: slog.LevelInfo, store: store.DefaultOptions(), limits: server.DefaultLimits()}
	fs.StringVar(&c.data, "data", "", "corpus directory (required)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7355", "listen address; keep it on loopback until the API has authentication")
	fs.BoolVar(&c.admin, "admin", true, "serve the AdminService (imports through the daemon); -admin=false switches it off")
	fs.Float64Var(&c.store.FalsePositiveRate, "fpr", c.store.FalsePositiveRate, "Bloom filter target false-positive rate, between 0 and 1")
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
	if c.shutdownTimeout <= 0 {
		return c, fmt.Errorf("invalid --shutdown-timeout %v: want a positive duration", c.shutdownTimeout)
	}
	for _, err := range []error{c.store.Validate(), c.limits.Validate()} {
		if err != nil {
			return c, flagError(err, serveFlags)
		}
	}
	return c, nil
}

// flagError words an invalid option by the flag that set it.
func flagError(err error, flags map[string]string) error {
	var oe *breachd.OptionError
	if errors.As(err, &oe) {
		if f, ok := flags[oe.Option]; ok {
			return fmt.Errorf("invalid %s %v: want %s", f, oe.Value, oe.Want)
		}
	}
	return err
}

func serve(ctx context.Context, c serveConfig, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	c.store.Logger = log
	st, err := store.Open(ctx, c.data, c.store)
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
	// The chain, in order: recovery, logging; authentication and quotas go
	// after them.
	unary, stream := server.Interceptors(log)
	gs := grpc.NewServer(append(c.limits.ServerOptions(),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...))...)
	hs := server.Register(gs, service.New(st), server.Options{Logger: log, Admin: c.admin})
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
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
	server.Shutdown(sctx, gs, hs, log)
	<-served
	log.Info("stopped")
	return nil
}
