// Package stdintest gives a test's process a pipe as its standard input,
// as a shell's "producer | breachd ..." does, for the commands' tests of
// reading a dump from "-".
package stdintest
