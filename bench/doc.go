// Package bench is the benchmark lab's library: latency histograms
// (bench/hdr), the load generator (bench/loadgen), and — growing — the
// scenario matrix, peer config generators and result writers behind
// cmd/proxybench. Until the matrix runner exists, `make bench` runs
// scripts/bench-h1.sh.
package bench
