package bench

import (
	"slices"
	"testing"
	"time"
)

// PairBatch is how many consecutive calls of one function [Paired] makes
// before switching to the other.
const PairBatch = 16

// Paired measures op against base, a yardstick such as a raw signature,
// in one benchmark: it runs them in alternating batches of [PairBatch]
// calls, b.N calls of each in all, and times every call. Because the two
// share every slow spell of a busy machine, their ratio is steadier than
// one taken between two separate benchmarks; batching keeps an operation
// that spans goroutines (a transport round trip) in the same warm state as
// in a plain loop, and the medians drop the first, colder call of a batch.
// It reports, as medians over the calls:
//
//	ns/op       op
//	base-ns/op  base
//	x-base      op / base
//
// plus the mean of op as mean-ns/op. op and base should fail the benchmark
// themselves on error.
func Paired(b *testing.B, base, op func()) {
	b.Helper()
	base() // warm up both outside the measurement
	op()
	opT := make([]time.Duration, 0, b.N)
	baseT := make([]time.Duration, 0, b.N)
	timeN := func(f func(), n int, into []time.Duration) []time.Duration {
		for range n {
			t0 := time.Now()
			f()
			into = append(into, time.Since(t0))
		}
		return into
	}
	b.ResetTimer()
	for i, batch := 0, 0; i < b.N; i, batch = i+PairBatch, batch+1 {
		n := min(PairBatch, b.N-i)
		if batch%2 == 0 {
			baseT = timeN(base, n, baseT)
			opT = timeN(op, n, opT)
		} else {
			opT = timeN(op, n, opT)
			baseT = timeN(base, n, baseT)
		}
	}
	b.StopTimer()
	var sum time.Duration
	for _, d := range opT {
		sum += d
	}
	mOp, mBase := Median(opT), Median(baseT)
	b.ReportMetric(float64(mOp.Nanoseconds()), "ns/op")
	b.ReportMetric(float64(mBase.Nanoseconds()), "base-ns/op")
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(opT)), "mean-ns/op")
	if mBase > 0 {
		b.ReportMetric(float64(mOp)/float64(mBase), "x-base")
	}
}

// Median returns the median of d (0 for none). d is not modified.
func Median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
