package localratelimit

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// allowance is the most a bucket may grant from start to now: full at
// start, plus every fill since.
func allowance(max, per uint32, interval, elapsed time.Duration) uint64 {
	return uint64(max) + uint64(elapsed/interval)*uint64(per)
}

// TestBucketGrantsExactlyItsAllowance: a single taker asking as fast as it
// can gets exactly max_tokens plus tokens_per_fill per elapsed interval, and
// the remaining count and reset follow.
func TestBucketGrantsExactlyItsAllowance(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		max, per uint32
		interval time.Duration
	}{
		{1, 1, time.Second}, {3, 1, 100 * time.Millisecond}, {10, 5, time.Second}, {100, 100, 50 * time.Millisecond}, {5, 10, time.Second},
	} {
		b := NewBucket(tc.max, tc.per, tc.interval, start)
		granted := uint64(0)
		for step := time.Duration(0); step <= 20*tc.interval; step += tc.interval / 4 {
			now := start.Add(step)
			for {
				left, ok := b.Take(now)
				if !ok {
					break
				}
				granted++
				if granted > allowance(tc.max, tc.per, tc.interval, step) {
					t.Fatalf("%+v: granted %d by %v, allowance %d", tc, granted, step, allowance(tc.max, tc.per, tc.interval, step))
				}
				_ = left
			}
			if want := allowance(tc.max, tc.per, tc.interval, step); granted != want && tc.per <= tc.max {
				t.Fatalf("%+v: granted %d by %v, want the whole allowance %d", tc, granted, step, want)
			}
		}
		if r := b.Reset(start.Add(tc.interval / 4)); r < 1 {
			t.Fatalf("reset %d", r)
		}
	}
}

// TestBucketConcurrentTakers: takers on many goroutines with clocks that
// race each other never get more than the allowance, and the bucket never
// refills from a clock read that went backwards.
func TestBucketConcurrentTakers(t *testing.T) {
	start := time.Unix(1000, 0)
	const interval = 50 * time.Millisecond
	b := NewBucket(20, 7, interval, start)
	var clock atomic.Int64 // nanoseconds since start, advanced by takers
	var granted atomic.Uint64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				now := clock.Add(int64(g+1) * 37 * int64(time.Microsecond))
				// Read a slightly older time now and then: another loop's
				// clock read that lost the race.
				if i%5 == 0 {
					now -= int64(3 * time.Millisecond)
				}
				if _, ok := b.Take(start.Add(time.Duration(now))); ok {
					granted.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Duration(clock.Load())
	if got, max := granted.Load(), allowance(20, 7, interval, elapsed); got > max {
		t.Fatalf("granted %d over %v, allowance %d", got, elapsed, max)
	}
}

// FuzzBucket: for any sequence of clock steps (some backwards) the tokens
// granted never exceed the allowance of the latest time seen.
func FuzzBucket(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 5, 0, 200, 0}, uint8(3), uint8(1))
	f.Add([]byte{0, 0, 255, 255, 0, 1}, uint8(1), uint8(9))
	f.Fuzz(func(t *testing.T, steps []byte, max, per uint8) {
		if max == 0 || per == 0 {
			return
		}
		start := time.Unix(1000, 0)
		const interval = 50 * time.Millisecond
		b := NewBucket(uint32(max), uint32(per), interval, start)
		var now, latest time.Duration
		granted := uint64(0)
		for len(steps) >= 2 {
			d := time.Duration(int16(binary.LittleEndian.Uint16(steps))) * time.Millisecond
			steps = steps[2:]
			now += d
			if now < 0 {
				now = 0
			}
			latest = max64(latest, now)
			if _, ok := b.Take(start.Add(now)); ok {
				granted++
			}
			if a := allowance(uint32(max), uint32(per), interval, latest); granted > a {
				t.Fatalf("granted %d, allowance %d at %v", granted, a, latest)
			}
		}
	})
}

func max64(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// TestDescriptorBounded: distinct values past max_entries share one bucket
// until a sweep (at most once per fill interval) frees the full ones.
func TestDescriptorBounded(t *testing.T) {
	start := time.Unix(1000, 0)
	one := uint32(1)
	d := &descriptor{tb: TokenBucket{MaxTokens: 1, TokensPerFill: &one, FillInterval: time.Second}, max: 2}
	d.spill = d.tb.bucket(start)
	d.lastSweep.Store(start.UnixNano())
	a, b := d.get("a", start), d.get("b", start)
	if a == b || a == d.spill || b == d.spill {
		t.Fatal("the first values did not get buckets of their own")
	}
	a.Take(start)
	if d.get("c", start) != d.spill {
		t.Fatal("a third value got a bucket past max_entries")
	}
	// A fill interval later "a" is full again and "b" never was used: both
	// are swept, "c" gets its own bucket.
	later := start.Add(1500 * time.Millisecond)
	if c := d.get("c", later); c == d.spill || d.n.Load() != 1 {
		t.Fatalf("after the sweep: spill=%v, entries %d", c == d.spill, d.n.Load())
	}
}
