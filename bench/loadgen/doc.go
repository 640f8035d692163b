// Command loadgen drives a real breachd daemon over loopback and reports, as
// Markdown, what a user pays for a lookup on top of gRPC itself:
//
//   - unary Check QPS and p50/p99/p999 latency at several concurrencies,
//     alternated round by round with the server's own gRPC health Check (the
//     no-op baseline), and the ratio of the two;
//   - Check latency under an open-loop load at 80% of the peak Check QPS,
//     measured from each call's scheduled start, so a stall is not hidden;
//   - CheckStream digests/s with several batches in flight;
//   - the daemon's RSS.
//
// Checks are 95% absent digests (random) and 5% present ones taken from the
// dump given with --corpus; every answer is verified.
//
//	loadgen --breachd bin/breachd --data DIR --corpus demo/segapass.csv
//	loadgen --addr 127.0.0.1:7355 --corpus demo/segapass.csv
package main
