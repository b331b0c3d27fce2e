// Package summary turns repeated measurements into the figures a report
// gives: median and spread, a 95% confidence interval of the mean, and
// ratios against a baseline paired within rounds (so drift on a shared
// machine cancels instead of biasing one system).
package summary

import (
	"errors"
	"math"

	"github.com/montanaflynn/stats"
)

// Summary describes a sample.
type Summary struct {
	N                 int
	Median, Mean      float64
	Min, Max          float64
	StdDev            float64
	CI95Low, CI95High float64 // of the mean (Student's t)
}

// Of summarises xs.
func Of(xs []float64) (Summary, error) {
	if len(xs) == 0 {
		return Summary{}, errors.New("summary: no values")
	}
	d := stats.Float64Data(xs)
	s := Summary{N: len(xs)}
	s.Median, _ = d.Median()
	s.Mean, _ = d.Mean()
	s.Min, _ = d.Min()
	s.Max, _ = d.Max()
	if len(xs) > 1 {
		s.StdDev, _ = d.StandardDeviationSample()
		half := tQuantile975(len(xs)-1) * s.StdDev / math.Sqrt(float64(len(xs)))
		s.CI95Low, s.CI95High = s.Mean-half, s.Mean+half
	} else {
		s.CI95Low, s.CI95High = s.Mean, s.Mean
	}
	return s, nil
}

// tQuantile975 is Student's t 97.5% quantile for df degrees of freedom.
func tQuantile975(df int) float64 {
	table := []float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086}
	if df <= len(table) {
		return table[df-1]
	}
	return 1.96 + 2.4/float64(df) // close enough beyond 20
}

// PairedRatios divides each round's value of a system by the baseline's
// value in the same round; rounds missing either are skipped.
func PairedRatios(system, baseline map[int]float64) []float64 {
	var out []float64
	for round, v := range system {
		if b, ok := baseline[round]; ok && b != 0 {
			out = append(out, v/b)
		}
	}
	return out
}

// Percentile is the p-th percentile (0–100) of xs, nearest rank.
func Percentile(xs []float64, p float64) (float64, error) {
	return stats.Float64Data(xs).PercentileNearestRank(p)
}
