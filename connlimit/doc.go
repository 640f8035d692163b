// Package connlimit caps the connections a listener holds: in total and
// from any one source address. A connection over a cap is closed as soon as
// it is accepted, so that one client opening connections it never uses
// cannot take every file descriptor of the daemon and starve everyone else
// (an idle TLS connection otherwise lives until the handshake times out).
//
// A Listener's connections are wrapped, so that closing one frees its
// place. Listener.Bare hands out the underlying connections themselves
// instead (fasthttp writes a large answer in one writev only to a
// *net.TCPConn), and its owner reports each close (Listener.Closed), as
// fasthttp's Server.ConnState does for the HTTP face.
package connlimit
