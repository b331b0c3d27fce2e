package upstream

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func hostsOf(weights ...uint32) []*Host {
	var hs []*Host
	for i, w := range weights {
		hs = append(hs, &Host{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w})
	}
	return hs
}

func TestWeightedRoundRobinExactAndSmooth(t *testing.T) {
	hs := hostsOf(5, 1, 1)
	lb := NewWeightedRoundRobin(hs)
	var seq strings.Builder
	for cycle := 0; cycle < 3; cycle++ {
		counts := map[*Host]int{}
		for i := 0; i < 7; i++ {
			h := lb.Choose(nil)
			counts[h]++
			seq.WriteByte("ABC"[strings.Index("123", h.Address[7:8])])
		}
		if counts[hs[0]] != 5 || counts[hs[1]] != 1 || counts[hs[2]] != 1 {
			t.Fatalf("cycle %d: %d/%d/%d, want exactly 5/1/1", cycle, counts[hs[0]], counts[hs[1]], counts[hs[2]])
		}
	}
	// Smooth: the light hosts are spread out, never picked back to back,
	// and the heavy host never takes a whole cycle's share in a row.
	if strings.Contains(seq.String(), "AAAAA") || strings.Contains(seq.String(), "BC") || strings.Contains(seq.String(), "CB") {
		t.Fatalf("not interleaved: %s", seq.String())
	}
	// Equal weights: plain rotation.
	eq := NewWeightedRoundRobin(hostsOf(1, 1, 1))
	a, b, c, d := eq.Choose(nil), eq.Choose(nil), eq.Choose(nil), eq.Choose(nil)
	if a == b || b == c || a == c || a != d {
		t.Fatal("equal weights are not a rotation")
	}
}

func TestLeastRequestPrefersIdleHosts(t *testing.T) {
	hs := hostsOf(1, 1, 1, 1)
	hs[0].ActiveRequests.Store(100)
	hs[1].ActiveRequests.Store(100)
	lb := NewLeastRequest(hs)
	busy := 0
	for i := 0; i < 10000; i++ {
		if h := lb.Choose(nil); h == hs[0] || h == hs[1] {
			busy++
		}
	}
	// A busy host wins only when both choices are busy: about 1/6 of picks
	// for 2 busy of 4 (both drawn from the 2 busy ones: 2/4 × 1/3).
	if busy > 2200 || busy < 1100 {
		t.Fatalf("busy hosts chosen %d of 10000", busy)
	}
}

func keys(n int) []*LBContext {
	out := make([]*LBContext, n)
	for i := range out {
		out[i] = &LBContext{Hash: HashKey([]byte(fmt.Sprintf("user-%d", i))), HasHash: true}
	}
	return out
}

// kept reports, when the last of ten hosts leaves, the share of all keys that
// keep their host and the share of the survivors' keys that do (ideally all:
// only the departing host's keys, about 10%, should move).
func kept(t *testing.T, build LBFactory) (all, survivors float64, dist map[string]int) {
	hs := hostsOf(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	before, after := build(hs), build(hs[:9])
	ks := keys(100000)
	same, onSurvivors, survived := 0, 0, 0
	dist = map[string]int{}
	for _, k := range ks {
		a, b := before.Choose(k), after.Choose(k)
		dist[a.Address]++
		if a == b {
			same++
		}
		if a != hs[9] {
			onSurvivors++
			if a == b {
				survived++
			}
		}
	}
	return float64(same) / float64(len(ks)), float64(survived) / float64(onSurvivors), dist
}

func TestConsistentHashingKeepsKeys(t *testing.T) {
	for name, tc := range map[string]struct {
		f            LBFactory
		minSurvivors float64
	}{"ring_hash": {NewRingHash, 1.0}, "maglev": {NewMaglev, 0.99}} {
		all, surv, dist := kept(t, tc.f)
		t.Logf("%s: when 1 of 10 hosts leaves, %.2f%% of all keys and %.2f%% of the other hosts' keys stay", name, all*100, surv*100)
		if surv < tc.minSurvivors || all < 0.88 {
			t.Errorf("%s: %.2f%% of all keys, %.2f%% of the survivors' keys kept; want only the departing host's keys to move", name, all*100, surv*100)
		}
		for addr, n := range dist {
			if n < 5000 || n > 15000 {
				t.Errorf("%s: host %s got %d of 100000 keys", name, addr, n)
			}
		}
		// Same key, same host.
		lb := tc.f(hostsOf(1, 1, 1))
		k := &LBContext{Hash: HashKey([]byte("sticky")), HasHash: true}
		if lb.Choose(k) != lb.Choose(k) {
			t.Errorf("%s is not consistent", name)
		}
	}
}

func TestMaglevTableBalanced(t *testing.T) {
	lb := NewMaglev(hostsOf(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)).(*maglev)
	counts := map[*Host]int{}
	for _, h := range lb.table {
		counts[h]++
	}
	want := float64(MaglevTableSize) / 10
	for h, n := range counts {
		if math.Abs(float64(n)-want)/want > 0.01 {
			t.Errorf("%s owns %d slots, want %.0f ±1%%", h.Address, n, want)
		}
	}
	// Weighted: a weight-3 host owns about 3× the slots of weight-1 hosts.
	w := NewMaglev(hostsOf(3, 1, 1)).(*maglev)
	c := map[uint32]int{}
	for _, h := range w.table {
		c[h.Weight]++
	}
	if r := float64(c[3]) / float64(MaglevTableSize); math.Abs(r-0.6) > 0.01 {
		t.Errorf("weight 3 of 5 owns %.3f of the table, want 0.6", r)
	}
}

func BenchmarkChoose(b *testing.B) {
	hs := hostsOf(1, 2, 3, 1, 2, 3, 1, 2, 3, 1)
	ctx := &LBContext{Hash: HashKey([]byte("k")), HasHash: true}
	for _, tc := range []struct {
		name string
		f    LBFactory
	}{{"round_robin", NewRoundRobin}, {"weighted_round_robin", NewWeightedRoundRobin}, {"random", NewRandom},
		{"least_request", NewLeastRequest}, {"ring_hash", NewRingHash}, {"maglev", NewMaglev}} {
		lb := tc.f(hs)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				ctx.Hash += 0x9e3779b97f4a7c15
				if lb.Choose(ctx) == nil {
					b.Fatal("nil")
				}
			}
		})
	}
}

func TestHealthAndPanicThreshold(t *testing.T) {
	c := &Cluster{Name: "c"}
	hs := hostsOf(1, 1, 1, 1)
	c.hosts.Store(&hs)
	c.lbf, c.panicAt = NewRoundRobin, PanicThreshold
	c.rebalance()
	chosen := func() map[*Host]bool {
		m := map[*Host]bool{}
		for i := 0; i < 40; i++ {
			m[c.Choose(nil)] = true
		}
		return m
	}
	if !c.SetHealthy(c.Hosts()[0], false) || c.SetHealthy(c.Hosts()[0], false) {
		t.Fatal("SetHealthy must report only changes")
	}
	if m := chosen(); m[c.Hosts()[0]] || len(m) != 3 || c.Panic() {
		t.Fatalf("one unhealthy of four: chosen %d hosts (unhealthy chosen: %v), panic %v", len(m), m[c.Hosts()[0]], c.Panic())
	}
	c.SetHealthy(c.Hosts()[1], false)
	c.SetHealthy(c.Hosts()[2], false) // 1 of 4 healthy: below 50%
	if m := chosen(); len(m) != 4 || !c.Panic() {
		t.Fatalf("panic mode should use all hosts: chose %d, panic %v", len(m), c.Panic())
	}
	for _, h := range c.Hosts() {
		c.SetHealthy(h, true)
	}
	if m := chosen(); len(m) != 4 || c.Panic() {
		t.Fatal("all healthy again")
	}
}

func TestOutlierEjectionCap(t *testing.T) {
	c := &Cluster{Name: "c", outlier: &Outlier{Consecutive5xx: 2, BaseEjectionTime: time.Minute, MaxEjectionPercent: 10},
		outlierStats: &OutlierStats{}}
	hs := hostsOf(1, 1, 1, 1)
	c.hosts.Store(&hs)
	c.lbf, c.panicAt = NewRoundRobin, PanicThreshold
	c.rebalance()
	for _, h := range c.Hosts()[:2] {
		c.ReportResponse(h, 503)
		c.ReportResponse(h, 0) // a reset counts like a 5xx
	}
	if !c.Hosts()[0].Ejected() || c.Hosts()[1].Ejected() {
		t.Fatalf("10%% of 4 hosts: the first must be ejected (at least one always may), the second not")
	}
	if c.outlierStats.EjectionsOverflow.Value() != 1 || c.outlierStats.Ejections.Value() != 1 {
		t.Fatalf("ejections %d, overflow %d", c.outlierStats.Ejections.Value(), c.outlierStats.EjectionsOverflow.Value())
	}
	// A success resets the count.
	c.ReportResponse(c.Hosts()[2], 503)
	c.ReportResponse(c.Hosts()[2], 200)
	c.ReportResponse(c.Hosts()[2], 503)
	if c.Hosts()[2].Ejected() {
		t.Fatal("non-consecutive failures ejected a host")
	}
	for i := 0; i < 100; i++ {
		if c.Choose(nil) == c.Hosts()[0] {
			t.Fatal("ejected host chosen")
		}
	}
}
