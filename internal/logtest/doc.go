// Package logtest holds what tests need to read a component's logs: a
// buffer that the component's slog handler writes to from many goroutines
// while the test reads it.
package logtest
