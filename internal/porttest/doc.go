// Package porttest reserves loopback ports for tests that must know a port
// before something binds it: a daemon started in another process, or a
// NATS node restarted on the port it had.
package porttest
