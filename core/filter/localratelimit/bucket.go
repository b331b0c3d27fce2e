package localratelimit

import (
	"sync/atomic"
	"time"
)

// Bucket is a token bucket refilled by tokens_per_fill every fill_interval
// (Envoy's discrete fill), computed lazily from the clock: no goroutine or
// timer per bucket. Its whole state is one atomic word (tokens, fill tick),
// so takers on any loop agree with a compare-and-swap, never a lock.
type Bucket struct {
	max, perFill uint32
	interval     time.Duration
	start        time.Time
	// state: tokens in the high 32 bits, the fill tick they were counted
	// at (intervals since start, wrapping) in the low 32.
	state atomic.Uint64
}

// NewBucket returns a full bucket.
func NewBucket(max, perFill uint32, interval time.Duration, now time.Time) *Bucket {
	b := &Bucket{max: max, perFill: perFill, interval: interval, start: now}
	b.state.Store(uint64(max) << 32)
	return b
}

// tick is the fill interval now falls in.
func (b *Bucket) tick(now time.Time) uint32 {
	d := now.Sub(b.start)
	if d < 0 {
		return 0
	}
	return uint32(d / b.interval)
}

// fill returns the tokens of state s at tick t and the tick to store: a
// taker whose clock read is behind the stored tick (another loop counted
// a later one first) refills nothing and keeps the later tick. (Ticks wrap
// after 2^32 intervals: years at Envoy's minimum 50ms.)
func (b *Bucket) fill(s uint64, t uint32) (uint64, uint32) {
	tokens, last := s>>32, uint32(s)
	gap := t - last
	if gap == 0 || gap >= 1<<31 {
		return tokens, last
	}
	return min(tokens+uint64(gap)*uint64(b.perFill), uint64(b.max)), t
}

// Take takes one token at now; ok false when the bucket is empty. left is
// what remains after the take.
func (b *Bucket) Take(now time.Time) (left uint32, ok bool) {
	t := b.tick(now)
	for {
		s := b.state.Load()
		tokens, at := b.fill(s, t)
		if tokens == 0 {
			return 0, false
		}
		if b.state.CompareAndSwap(s, (tokens-1)<<32|uint64(at)) {
			return uint32(tokens - 1), true
		}
	}
}

// Full reports whether the bucket holds max_tokens at now (it is then no
// different from a new one).
func (b *Bucket) Full(now time.Time) bool {
	tokens, _ := b.fill(b.state.Load(), b.tick(now))
	return tokens == uint64(b.max)
}

// Max is the bucket's capacity.
func (b *Bucket) Max() uint32 { return b.max }

// Reset is the time until the next fill, rounded up to whole seconds (the
// x-ratelimit-reset value).
func (b *Bucket) Reset(now time.Time) int64 {
	d := now.Sub(b.start)
	if d < 0 {
		d = 0
	}
	left := b.interval - d%b.interval
	return int64((left + time.Second - 1) / time.Second)
}
