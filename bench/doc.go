// Package bench holds the end-to-end benchmarks of breachd: gRPC Check and
// CheckStream over a real loopback connection to a real store. The load
// generator is bench/loadgen; the scripts here (run.sh, sweep.sh, growth.sh)
// drive them and write RESULTS.md. See bench/README.md.
package bench
