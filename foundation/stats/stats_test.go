package stats

import (
	"sync"
	"testing"
	"time"
)

func TestCounterSumsShards(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(key uint64) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Inc(key)
			}
		}(uint64(g * 3))
	}
	wg.Wait()
	if c.Value() != 8000 {
		t.Fatalf("%d", c.Value())
	}
	var nilC *Counter
	nilC.Inc(1) // disabled stats: no panic
	if nilC.Value() != 0 {
		t.Fatal("nil counter has a value")
	}
}

func TestGauge(t *testing.T) {
	var g Gauge
	g.Add(1, 5)
	g.Add(2, -3)
	g.Add(9, 1) // another shard
	if g.Value() != 3 {
		t.Fatalf("%d", g.Value())
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 3 * time.Millisecond, 2 * time.Minute} {
		h.Observe(uint64(d), d)
	}
	cum, count, sum := h.Snapshot()
	if count != 4 {
		t.Fatalf("count %d", count)
	}
	// 50µs and exactly 100µs are both ≤ 0.0001.
	if cum[0.0001] != 2 || cum[0.0025] != 2 || cum[0.005] != 3 || cum[60] != 3 {
		t.Fatalf("cumulative %v", cum)
	}
	if want := (50e-6 + 100e-6 + 3e-3 + 120); sum < want-1e-9 || sum > want+1e-9 {
		t.Fatalf("sum %v", sum)
	}
	if q := h.Quantile(0.5); q != 0.0001 {
		t.Fatalf("p50 %v", q)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	var c Counter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := uint64(time.Now().UnixNano())
		for pb.Next() {
			c.Inc(key)
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Observe(uint64(i), time.Duration(i%5000)*time.Microsecond)
	}
}
