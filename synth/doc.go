// Package synth generates deterministic synthetic breach dumps shaped like the
// Sega Pass dump of June 2011 (email, name, date of birth, encrypted password),
// for the demo corpus, tests and benchmarks. No real person's data is used:
// names and addresses are drawn from small built-in lists with a seeded PRNG.
package synth
