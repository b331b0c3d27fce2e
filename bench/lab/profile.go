package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/google/pprof/profile"
)

// Profile is proxylab's CPU profile (runtime/pprof through the admin API's
// /debug/pprof/profile) over one extra, unmeasured pass of a cell, so the
// profiler's own cost never enters the measured rounds.
type Profile struct {
	System        string `json:"system"`
	Protocol      string `json:"protocol"`
	Connections   int    `json:"connections"`
	ResponseBytes int    `json:"response_bytes"`
	RequestBytes  int    `json:"request_bytes"`
	File          string `json:"file"` // name of the raw profile in the results directory
	// Seconds is the CPU time sampled; Top the functions with the most of it.
	Seconds float64   `json:"cpu_seconds"`
	Top     []FuncCPU `json:"top"`
	raw     []byte
}

// FuncCPU is one function's share of a profile's CPU samples: Flat in the
// function itself, Cum in it and everything it called.
type FuncCPU struct {
	Name    string  `json:"function"`
	FlatPct float64 `json:"flat_pct"`
	CumPct  float64 `json:"cum_pct"`
}

// fetchProfile takes a CPU profile of d from a proxylab admin address.
func fetchProfile(ctx context.Context, admin string, d time.Duration) ([]byte, error) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, max(int(d.Seconds()), 1))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("lab: profile: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lab: profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("lab: profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lab: profile: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// summarizeProfile parses a pprof CPU profile and returns the CPU seconds it
// holds and the n functions with the most flat time, with their cumulative
// share. Inlined frames count as their own functions, as in `pprof -top`.
func summarizeProfile(raw []byte, n int) (float64, []FuncCPU, error) {
	p, err := profile.Parse(bytes.NewReader(raw))
	if err != nil {
		return 0, nil, fmt.Errorf("lab: profile: %w", err)
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return 0, nil, fmt.Errorf("lab: profile has no cpu sample type (%d types)", len(p.SampleType))
	}
	flat, cum := map[string]int64{}, map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		seen := map[string]bool{}
		for li, loc := range s.Location {
			for fi, line := range loc.Line {
				name := "?"
				if line.Function != nil {
					name = line.Function.Name
				}
				if li == 0 && fi == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	if total == 0 {
		return 0, nil, nil
	}
	names := make([]string, 0, len(flat))
	for name := range flat {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if flat[names[i]] != flat[names[j]] {
			return flat[names[i]] > flat[names[j]]
		}
		return names[i] < names[j]
	})
	var top []FuncCPU
	for _, name := range names[:min(n, len(names))] {
		top = append(top, FuncCPU{Name: name, FlatPct: 100 * float64(flat[name]) / float64(total), CumPct: 100 * float64(cum[name]) / float64(total)})
	}
	return float64(total) / 1e9, top, nil
}
