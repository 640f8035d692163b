package connlimit_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breachd/breachd/connlimit"
)

// server accepts on a capped loopback listener and keeps what it accepts.
// On Bare's listener it reports each connection it closes (Closed).
type server struct {
	l        *connlimit.Listener
	mu       sync.Mutex
	accepted []net.Conn
	refused  map[connlimit.Reason]int
}

func serve(t *testing.T, lim connlimit.Limits, bare bool) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{refused: map[connlimit.Reason]int{}}
	s.l = connlimit.Wrap(ln, lim, func(r connlimit.Reason, _ netip.Prefix) {
		s.mu.Lock()
		s.refused[r]++
		s.mu.Unlock()
	})
	t.Cleanup(func() { s.l.Close() })
	var accept net.Listener = s.l
	if bare {
		accept = s.l.Bare()
	}
	go func() {
		for {
			c, err := accept.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted = append(s.accepted, c)
			s.mu.Unlock()
			c.Write([]byte{1}) // tells the client it was admitted
			go func() {        // closes when the client does
				io.Copy(io.Discard, c)
				c.Close()
				if bare {
					s.l.Closed(c)
				}
			}()
		}
	}()
	return s
}

// dial connects from local address from and reports whether the server
// kept the connection (it writes one byte to each it admits; a refused one
// is closed at once).
func dial(t *testing.T, s *server, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", s.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	if err != nil && !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("reading from the server: %v", err)
	}
	return c, err == nil
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

// modes runs fn on a Listener and on its Bare listener.
func modes(t *testing.T, fn func(t *testing.T, bare bool)) {
	t.Parallel()
	for _, bare := range []bool{false, true} {
		t.Run(map[bool]string{false: "wrapped", true: "bare"}[bare], func(t *testing.T) {
			t.Parallel()
			fn(t, bare)
		})
	}
}

func TestPerAddress(t *testing.T) { modes(t, testPerAddress) }

func testPerAddress(t *testing.T, bare bool) {
	s := serve(t, connlimit.Limits{Total: 10, PerAddress: 3}, bare)
	var first net.Conn
	for i := range 3 {
		c, ok := dial(t, s, "127.0.0.2")
		if !ok {
			t.Fatalf("connection %d from 127.0.0.2 refused under the cap", i+1)
		}
		if i == 0 {
			first = c
		}
	}
	if _, ok := dial(t, s, "127.0.0.2"); ok {
		t.Fatal("a fourth connection from 127.0.0.2 was kept over a cap of 3")
	}
	if _, ok := dial(t, s, "127.0.0.1"); !ok {
		t.Fatal("another address was refused while 127.0.0.2 was at its cap")
	}
	// A closed connection frees its place.
	first.Close()
	waitOpen(t, s, netip.MustParsePrefix("127.0.0.2/32"), 2)
	if _, ok := dial(t, s, "127.0.0.2"); !ok {
		t.Fatal("127.0.0.2 was refused after one of its connections closed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused[connlimit.OverPerAddress] != 1 {
		t.Fatalf("refusals: %v, want one per_address", s.refused)
	}
}

func TestTotal(t *testing.T) { modes(t, testTotal) }

func testTotal(t *testing.T, bare bool) {
	s := serve(t, connlimit.Limits{Total: 2}, bare)
	for _, from := range []string{"127.0.0.3", "127.0.0.4"} {
		if _, ok := dial(t, s, from); !ok {
			t.Fatalf("a connection from %s refused under the total cap", from)
		}
	}
	if _, ok := dial(t, s, "127.0.0.5"); ok {
		t.Fatal("a third connection was kept over a total cap of 2")
	}
}

func waitOpen(t *testing.T, s *server, src netip.Prefix, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, n := s.l.Open(src); n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections from %s never came to %d", src, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"192.0.2.7:443", "192.0.2.7/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7/32"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := connlimit.Source(a)
		if !ok || p.String() != tc.want {
			t.Errorf("Source(%s) = %v, %v; want %s", tc.addr, p, ok, tc.want)
		}
	}
}

// TestBare checks what Bare's listener adds: its connections are the
// underlying listener's own (a *net.TCPConn, which fasthttp writes to with
// writev), a closed one keeps its place until Closed reports it, and
// Closed finds a connection through a *tls.Conn over it, once.
func TestBare(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	l := connlimit.Wrap(ln, connlimit.Limits{Total: 1}, func(connlimit.Reason, netip.Prefix) { refused.Add(1) })
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 2)
	go func() {
		bl := l.Bare()
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	dial()
	c := next()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("Bare's Accept returned a %T, want the listener's own *net.TCPConn", c)
	}
	// Closed but not reported: it still holds the only place.
	c.Close()
	dial()
	for deadline := time.Now().Add(5 * time.Second); refused.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a connection over the cap was not refused while the closed one went unreported")
		}
	}
	l.Closed(tls.Server(c, &tls.Config{})) // found through the TLS connection over it
	if n := l.Total(); n != 0 {
		t.Fatalf("%d connections open after Closed, want 0", n)
	}
	l.Closed(c) // the second time
	stranger, other := net.Pipe()
	defer other.Close()
	defer stranger.Close()
	l.Closed(stranger) // never accepted by l
	if n := l.Total(); n != 0 {
		t.Fatalf("%d connections open after Closed again and Closed of a stranger, want 0", n)
	}
	dial()
	next() // the place Closed freed
	if n := l.Total(); n != 1 {
		t.Fatalf("%d connections open, want 1", n)
	}
}
