package summary

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSummaryOfKnownSample(t *testing.T) {
	s, err := Of([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 8 || s.Median != 4.5 || s.Mean != 5 || s.Min != 2 || s.Max != 9 {
		t.Fatalf("%+v", s)
	}
	// Sample standard deviation of this textbook set: sqrt(32/7).
	if math.Abs(s.StdDev-math.Sqrt(32.0/7)) > 1e-9 {
		t.Fatalf("stddev %v", s.StdDev)
	}
	half := 2.365 * s.StdDev / math.Sqrt(8)
	if math.Abs(s.CI95Low-(5-half)) > 1e-9 || math.Abs(s.CI95High-(5+half)) > 1e-9 {
		t.Fatalf("CI %v..%v", s.CI95Low, s.CI95High)
	}
	if _, err := Of(nil); err == nil {
		t.Fatal("empty sample accepted")
	}
}

// TestCICoverage: the 95% interval of the mean covers the true mean about
// 95% of the time for normal samples of 5 (the rounds a report has).
func TestCICoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	covered := 0
	const trials = 4000
	for i := 0; i < trials; i++ {
		xs := make([]float64, 5)
		for j := range xs {
			xs[j] = 10 + rng.NormFloat64()*2
		}
		s, _ := Of(xs)
		if s.CI95Low <= 10 && 10 <= s.CI95High {
			covered++
		}
	}
	if rate := float64(covered) / trials; rate < 0.93 || rate > 0.97 {
		t.Fatalf("coverage %.3f, want about 0.95", rate)
	}
}

func TestPairedRatiosCancelDrift(t *testing.T) {
	// The machine slows down over rounds; the system is always 1.2× the
	// baseline within a round. Unpaired medians would blur that, pairs don't.
	sys, base := map[int]float64{}, map[int]float64{}
	for r := 1; r <= 5; r++ {
		drift := 1 + 0.3*float64(r)
		base[r] = 10 * drift
		sys[r] = 12 * drift
	}
	sys[6] = 99 // a round the baseline missed is skipped
	ratios := PairedRatios(sys, base)
	if len(ratios) != 5 {
		t.Fatalf("%d ratios", len(ratios))
	}
	for _, r := range ratios {
		if math.Abs(r-1.2) > 1e-9 {
			t.Fatalf("ratio %v, want 1.2", r)
		}
	}
	if p, _ := Percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90); p != 9 {
		t.Fatalf("p90 %v", p)
	}
}
