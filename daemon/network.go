package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/breachd/breachd"
	"github.com/breachd/breachd/connlimit"
)

// Network bounds what anyone who can reach a listener can make the daemon
// hold before it knows who they are: connections, handshakes and HTTP
// requests. The defaults are far above what a small deployment uses and far
// below what exhausts the daemon (20,000 file descriptors).
type Network struct {
	// MaxConnections caps each listener's open connections (gRPC, HTTP,
	// metrics); MaxConnectionsPerAddress those from one source address
	// (an IPv4 address, an IPv6 /64). Connections over a cap are closed as
	// they are accepted. 0: no cap.
	MaxConnections, MaxConnectionsPerAddress int
	// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface (gRPC), and the reading of an HTTP request's headers: a
	// connection that sends nothing is closed after it.
	HandshakeTimeout time.Duration
	// HTTPReadTimeout, HTTPWriteTimeout and HTTPIdleTimeout bound an HTTP
	// request's reading, its answer's writing, and a kept-alive connection
	// waiting for the next request; HTTPMaxHeaderBytes its headers.
	HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration
	HTTPMaxHeaderBytes                                 int
}

// DefaultNetwork returns the daemon's limits unless configured otherwise.
func DefaultNetwork() Network {
	return Network{
		MaxConnections: 8192, MaxConnectionsPerAddress: 512,
		HandshakeTimeout: 5 * time.Second,
		HTTPReadTimeout:  30 * time.Second, HTTPWriteTimeout: time.Minute, HTTPIdleTimeout: 2 * time.Minute,
		HTTPMaxHeaderBytes: 16 << 10,
	}
}

// Validate reports the first unusable limit as a *breachd.OptionError.
func (n Network) Validate() error {
	switch {
	case n.MaxConnections < 0:
		return &breachd.OptionError{Option: "MaxConnections", Value: n.MaxConnections, Want: "0 (no cap) or more"}
	case n.MaxConnectionsPerAddress < 0:
		return &breachd.OptionError{Option: "MaxConnectionsPerAddress", Value: n.MaxConnectionsPerAddress, Want: "0 (no cap) or more"}
	case n.MaxConnections > 0 && n.MaxConnectionsPerAddress > n.MaxConnections:
		return &breachd.OptionError{Option: "MaxConnectionsPerAddress", Value: n.MaxConnectionsPerAddress, Want: fmt.Sprintf("at most max_connections (%d)", n.MaxConnections)}
	case n.HandshakeTimeout < 100*time.Millisecond:
		return &breachd.OptionError{Option: "HandshakeTimeout", Value: n.HandshakeTimeout, Want: "at least 100ms"}
	case n.HTTPReadTimeout < time.Second:
		return &breachd.OptionError{Option: "HTTPReadTimeout", Value: n.HTTPReadTimeout, Want: "at least 1s"}
	case n.HTTPWriteTimeout < time.Second:
		return &breachd.OptionError{Option: "HTTPWriteTimeout", Value: n.HTTPWriteTimeout, Want: "at least 1s"}
	case n.HTTPIdleTimeout < time.Second:
		return &breachd.OptionError{Option: "HTTPIdleTimeout", Value: n.HTTPIdleTimeout, Want: "at least 1s"}
	case n.HTTPMaxHeaderBytes < 4<<10:
		return &breachd.OptionError{Option: "HTTPMaxHeaderBytes", Value: n.HTTPMaxHeaderBytes, Want: "at least 4096"}
	}
	return nil
}

// httpServer returns an HTTP server for h bounded by n.
// The HTTP face's servers (Config.HTTPServer).
const (
	HTTPServerStd  = "net/http"
	HTTPServerFast = "fasthttp"
)

// fastServer is the HTTP face's server on fasthttp, within the same
// limits as httpServer's: fasthttp bounds a request's headers by its read
// buffer, and has no timeout for the handshake and headers alone: its
// ReadTimeout covers the TLS handshake, the headers and the body, so it is
// the handshake timeout (the bodies this face takes are a few KB). Its
// errors can quote the request (a path holds the account asked about), so
// they are logged without it. It serves a connlimit listener's Bare
// connections, unwrapped so that a padded /range answer (35 KB) goes out
// in one writev, and tells closed of each connection that ends.
func (n Network) fastServer(h fasthttp.RequestHandler, closed func(net.Conn), log *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{Handler: h, NoDefaultServerHeader: true, NoDefaultContentType: true,
		ReadTimeout: min(n.HTTPReadTimeout, n.HandshakeTimeout), WriteTimeout: n.HTTPWriteTimeout, IdleTimeout: n.HTTPIdleTimeout,
		ReadBufferSize: n.HTTPMaxHeaderBytes, MaxRequestBodySize: maxFastBody, Logger: fastLog{log},
		ConnState: func(c net.Conn, s fasthttp.ConnState) {
			if s == fasthttp.StateClosed || s == fasthttp.StateHijacked {
				closed(c)
			}
		}}
}

// maxFastBody bounds a request body fasthttp reads before the handler: the
// largest this face takes is the Kratos hook's 1 MiB (net/http streams
// bodies to the handlers, which stop reading there themselves).
const maxFastBody = 1 << 20

type fastLog struct{ log *slog.Logger }

func (l fastLog) Printf(string, ...any) {
	l.log.Warn("HTTP server error (fasthttp; not quoted: it may hold the request)")
}

func (n Network) httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: n.HandshakeTimeout, ReadTimeout: n.HTTPReadTimeout,
		WriteTimeout: n.HTTPWriteTimeout, IdleTimeout: n.HTTPIdleTimeout, MaxHeaderBytes: n.HTTPMaxHeaderBytes,
		ErrorLog: httpErrorLog(log)}
}

// newConnRefused counts the connections each listener refused.
func newConnRefused(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breachd_connections_refused_total",
		Help: "Connections closed as they were accepted because a cap was reached, by listener and cap (total, per_address).",
	}, []string{"listener", "cap"})
	reg.MustRegister(c)
	return c
}

// listen listens on addr (the listener named what, in metrics and logs)
// within the connection caps.
func (d *Daemon) listen(addr, what string) (*connlimit.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	n := d.cfg.Network
	l := connlimit.Wrap(ln, connlimit.Limits{Total: n.MaxConnections, PerAddress: n.MaxConnectionsPerAddress},
		func(r connlimit.Reason, src netip.Prefix) {
			d.connRefused.WithLabelValues(what, string(r)).Inc()
			d.log.Warn("connection refused: a cap was reached", "listener", what, "cap", string(r), "source", src.String())
		})
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "breachd_connections_open", Help: "Connections open, by listener.", ConstLabels: prometheus.Labels{"listener": what},
	}, func() float64 { return float64(l.Total()) }))
	return l, nil
}
