// Package hdr is a high-dynamic-range latency histogram: values from 1 µs to
// about an hour with at most 1/128 (0.8%) relative error, fixed memory, no
// allocation per record. Each power of two is split into 128 linear
// sub-buckets, as in Gil Tene's HdrHistogram.
package hdr

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits = 8
	sub     = 1 << subBits // values below this are exact
	half    = sub / 2      // sub-buckets per power of two above that
	maxExp  = 40           // beyond 2^(40+8) µs everything shares the top bucket
	nBucket = sub + maxExp*half
)

// Histogram counts durations in microseconds. Not safe for concurrent use:
// give each load-generating goroutine its own and Merge them.
type Histogram struct {
	counts [nBucket]uint64
	n      uint64
	sum    float64 // µs
	min    uint64
	max    uint64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxUint64} }

// index maps v to its bucket: exact below 256, then 128 linear sub-buckets
// per power of two (v >> exp lies in [128, 256)).
func index(v uint64) int {
	if v < sub {
		return int(v)
	}
	exp := bits.Len64(v) - subBits
	if exp > maxExp {
		return nBucket - 1
	}
	return sub + (exp-1)*half + int(v>>uint(exp)) - half
}

// lower is the smallest value in bucket i.
func lower(i int) uint64 {
	if i < sub {
		return uint64(i)
	}
	k := i - sub
	exp := k/half + 1
	return uint64(k%half+half) << uint(exp)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[index(us)]++
	h.n++
	h.sum += float64(us)
	h.min = min(h.min, us)
	h.max = max(h.max, us)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the average, exactly.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n) * float64(time.Microsecond))
}

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) * time.Microsecond }

// Quantile returns the q-quantile (0 < q ≤ 1): the lower bound of the bucket
// holding that rank, so within 0.8% of the true value.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := max(lower(i), h.min)
			return time.Duration(min(v, h.max)) * time.Microsecond
		}
	}
	return h.Max()
}

// Merge adds o's counts into h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}
