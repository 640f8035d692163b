package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Limits are a listener's caps. Zero means no cap.
type Limits struct {
	// Total caps the connections open at once.
	Total int
	// PerAddress caps those from one source: an IPv4 address, or an IPv6
	// /64 (one host's usual allocation).
	PerAddress int
}

// Reason says why a connection was refused.
type Reason string

const (
	OverTotal      Reason = "total"
	OverPerAddress Reason = "per_address"
)

// Listener is a net.Listener that enforces Limits.
type Listener struct {
	net.Listener
	lim Limits
	// refused is called (outside any lock) for each connection refused.
	refused func(Reason, netip.Prefix)

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]*group
	bare   map[net.Conn]*conn // what Bare's Accept returned, for Closed
}

// group is the open connections from one source.
type group struct {
	conns map[*conn]struct{}
}

// Wrap returns ln enforcing lim; refused, if not nil, hears of every
// connection closed for a cap (for a metric and a sampled log line).
func Wrap(ln net.Listener, lim Limits, refused func(Reason, netip.Prefix)) *Listener {
	return &Listener{Listener: ln, lim: lim, refused: refused, byAddr: map[netip.Prefix]*group{}, bare: map[net.Conn]*conn{}}
}

// Source returns the source a connection's remote address counts against:
// an IPv4 address as a /32, an IPv6 address's /64; ok is false for an
// address that is not IP (a unix socket), which is not capped per address.
func Source(a net.Addr) (p netip.Prefix, ok bool) {
	ta, isTCP := a.(*net.TCPAddr)
	if !isTCP {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		return prefix(ap.Addr()), true
	}
	ip, isIP := netip.AddrFromSlice(ta.IP)
	if !isIP {
		return netip.Prefix{}, false
	}
	return prefix(ip), true
}

func prefix(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Accept returns the next connection within the caps, closing those over
// them.
func (l *Listener) Accept() (net.Conn, error) { return l.accept(false) }

// Bare returns l as a listener whose Accept returns the underlying
// listener's connections themselves, within the same caps: a *net.TCPConn
// stays one (fasthttp sends a large answer's header and body in one writev
// only on those; through a wrapper it copies and writes twice). Closing
// such a connection does not free its place: its owner calls Closed for
// each once it is closed, as fasthttp's Server.ConnState reports it.
// Closing l closes the underlying listener, as Close on Bare's does.
func (l *Listener) Bare() net.Listener { return bareListener{l} }

type bareListener struct{ *Listener }

func (b bareListener) Accept() (net.Conn, error) { return b.accept(true) }

// Closed frees the place of a connection that Bare's Accept returned, or
// of a connection over one (a *tls.Conn). It does nothing for any other
// connection, or the second time.
func (l *Listener) Closed(c net.Conn) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	l.mu.Lock()
	tc := l.bare[c]
	l.mu.Unlock()
	if tc != nil {
		tc.release()
	}
}

func (l *Listener) accept(bare bool) (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, hasSrc := Source(c.RemoteAddr())
		reason := l.admit(src, hasSrc)
		if reason == "" {
			tc := l.track(c, src, hasSrc, bare)
			if bare {
				return c, nil
			}
			return tc, nil
		}
		c.Close()
		if l.refused != nil {
			l.refused(reason, src)
		}
	}
}

// admit counts a new connection from src, or says which cap it is over.
func (l *Listener) admit(src netip.Prefix, hasSrc bool) Reason {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim.Total > 0 && l.total >= l.lim.Total {
		return OverTotal
	}
	if hasSrc && l.lim.PerAddress > 0 {
		if g := l.byAddr[src]; g != nil && len(g.conns) >= l.lim.PerAddress {
			return OverPerAddress
		}
	}
	l.total++
	return ""
}

func (l *Listener) track(c net.Conn, src netip.Prefix, hasSrc, bare bool) *conn {
	tc := &conn{Conn: c, l: l, src: src, hasSrc: hasSrc}
	l.mu.Lock()
	defer l.mu.Unlock()
	if bare {
		l.bare[c] = tc
	}
	if hasSrc {
		g := l.byAddr[src]
		if g == nil {
			g = &group{conns: map[*conn]struct{}{}}
			l.byAddr[src] = g
		}
		g.conns[tc] = struct{}{}
	}
	return tc
}

func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	delete(l.bare, c.Conn) // a Bare connection's entry; none for the others
	if !c.hasSrc {
		return
	}
	if g := l.byAddr[c.src]; g != nil {
		delete(g.conns, c)
		if len(g.conns) == 0 {
			delete(l.byAddr, c.src)
		}
	}
}

// Open returns the number of connections open, in total and from src.
func (l *Listener) Open(src netip.Prefix) (total, fromSrc int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.byAddr[src]; g != nil {
		fromSrc = len(g.conns)
	}
	return l.total, fromSrc
}

// Total returns the number of connections open.
func (l *Listener) Total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// conn is an admitted connection; closing it frees its place once. Bare's
// connections are tracked by one, which their owner never sees.
type conn struct {
	net.Conn
	l      *Listener
	src    netip.Prefix
	hasSrc bool
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// release frees the connection's place, once.
func (c *conn) release() {
	if c.closed.CompareAndSwap(false, true) {
		c.l.forget(c)
	}
}
