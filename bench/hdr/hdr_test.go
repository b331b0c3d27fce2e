package hdr

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestBucketBoundsAreConsistent(t *testing.T) {
	// Every value maps to a bucket whose lower bound is ≤ it and within 1/128.
	for us := uint64(0); us < 1<<22; us = us*17/16 + 1 {
		i := index(us)
		lo := lower(i)
		if lo > us {
			t.Fatalf("value %d: bucket %d lower bound %d above it", us, i, lo)
		}
		if float64(us-lo)/float64(max(us, 1)) > 1.0/128 {
			t.Fatalf("value %d: bucket lower bound %d is %.2f%% off", us, lo, 100*float64(us-lo)/float64(us))
		}
		if i > 0 && lower(i-1) >= lo {
			t.Fatalf("bucket %d lower bound %d not above bucket %d's %d", i, lo, i-1, lower(i-1))
		}
	}
}

// TestQuantilesMatchExactOnes compares against sorted samples of known
// distributions: uniform, exponential, and a bimodal one with a rare slow
// mode (the tail a proxy benchmark is about).
func TestQuantilesMatchExactOnes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, gen := range map[string]func() float64{
		"uniform 100µs–10ms":   func() float64 { return 100 + rng.Float64()*9900 },
		"exponential mean 1ms": func() float64 { return rng.ExpFloat64() * 1000 },
		"bimodal 0.5ms / 1% at 50ms": func() float64 {
			if rng.Float64() < 0.01 {
				return 50000 + rng.Float64()*1000
			}
			return 400 + rng.Float64()*200
		},
	} {
		h := New()
		var xs []float64
		for i := 0; i < 200000; i++ {
			v := math.Floor(gen())
			xs = append(xs, v)
			h.Record(time.Duration(v) * time.Microsecond)
		}
		sort.Float64s(xs)
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			exact := xs[int(math.Ceil(q*float64(len(xs))))-1]
			got := float64(h.Quantile(q) / time.Microsecond)
			if exact > 0 && math.Abs(got-exact)/exact > 0.01 {
				t.Errorf("%s p%g: %v µs, exact %v µs", name, q*100, got, exact)
			}
		}
		mean := 0.0
		for _, x := range xs {
			mean += x
		}
		mean /= float64(len(xs))
		if got := float64(h.Mean() / time.Microsecond); math.Abs(got-mean) > 1 {
			t.Errorf("%s mean %v, exact %v", name, got, mean)
		}
	}
}

func TestMerge(t *testing.T) {
	a, b := New(), New()
	for i := 1; i <= 100; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(i+100) * time.Millisecond)
	}
	a.Merge(b)
	if a.Count() != 200 || a.Max() != 200*time.Millisecond {
		t.Fatalf("count %d max %v", a.Count(), a.Max())
	}
	if p50 := a.Quantile(0.5); p50 < 99*time.Millisecond || p50 > 101*time.Millisecond {
		t.Fatalf("p50 %v", p50)
	}
}

func BenchmarkRecord(b *testing.B) {
	h := New()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Record(time.Duration(i%100000) * time.Microsecond)
	}
}
