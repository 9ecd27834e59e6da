// Package bench holds cross-transport benchmarks — a getAssertion round
// trip over the UDP transport and through CTAPHID reports, beside a raw
// P-256 signature measured in the same run — and [Paired], the helper that
// times an operation against its yardstick inside one benchmark.
// cmd/benchratio runs these and the ctap2 benchmarks and prints the ratios
// the project's performance targets are stated in (scripts/bench.sh).
package bench
