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
}

// group is the open connections from one source.
type group struct {
	conns map[*conn]struct{}
}

// Wrap returns ln enforcing lim; refused, if not nil, hears of every
// connection closed for a cap (for a metric and a sampled log line).
func Wrap(ln net.Listener, lim Limits, refused func(Reason, netip.Prefix)) *Listener {
	return &Listener{Listener: ln, lim: lim, refused: refused, byAddr: map[netip.Prefix]*group{}}
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
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, hasSrc := Source(c.RemoteAddr())
		reason := l.admit(src, hasSrc)
		if reason == "" {
			return l.track(c, src, hasSrc), nil
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

func (l *Listener) track(c net.Conn, src netip.Prefix, hasSrc bool) net.Conn {
	tc := &conn{Conn: c, l: l, src: src, hasSrc: hasSrc}
	if hasSrc {
		l.mu.Lock()
		g := l.byAddr[src]
		if g == nil {
			g = &group{conns: map[*conn]struct{}{}}
			l.byAddr[src] = g
		}
		g.conns[tc] = struct{}{}
		l.mu.Unlock()
	}
	return tc
}

func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
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

// CloseFrom closes every open connection whose remote address is addr
// (exactly: host and port), and returns how many it closed.
func (l *Listener) CloseFrom(addr net.Addr) int {
	src, ok := Source(addr)
	if !ok {
		return 0
	}
	want := addr.String()
	var victims []*conn
	l.mu.Lock()
	if g := l.byAddr[src]; g != nil {
		for c := range g.conns {
			if c.RemoteAddr().String() == want {
				victims = append(victims, c)
			}
		}
	}
	l.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
	return len(victims)
}

// conn is an admitted connection; closing it frees its place once.
type conn struct {
	net.Conn
	l      *Listener
	src    netip.Prefix
	hasSrc bool
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.forget(c)
	}
	return err
}
