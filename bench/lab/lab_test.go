package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	// wrk 4.1 output with wrkScript's done() lines, as printed on this machine.
	out := `Running 1s test @ http://127.0.0.1:19201/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.90ms  300.00us   5.00ms   80.00%
    Req/Sec     0.96k   220.44     1.21k    60.00%
  55000 requests in 1.00s, 7.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 3
Requests/sec:  55000.00
Transfer/sec:      3.37MB
pct 50 850
pct 75 1000
pct 90 1200
pct 99 2500
pct 99.9 4100
pct 99.99 4900
pct 100 5000
`
	c, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if c.Requests != 55000 || c.RPS != 55000 || c.Errors != 6 || c.P50ms != 0.85 || c.P90ms != 1.2 || c.P99ms != 2.5 || c.P999ms != 4.1 || c.ReadBytes != 7<<20 {
		t.Fatalf("%+v", c)
	}
	if want := []float64{0.85, 1, 1.2, 2.5, 4.1, 4.9, 5}; !slices.Equal(c.LatencyMs, want) {
		t.Fatalf("latency points %v, want %v", c.LatencyMs, want)
	}
	for name, bad := range map[string]string{
		"garbage":            "garbage",
		"no percentiles":     strings.Split(out, "pct 50")[0],
		"missing percentile": strings.Replace(out, "pct 99.9 4100\n", "", 1),
		"wrong order":        strings.Replace(out, "pct 75 1000", "pct 80 1000", 1),
	} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestParseProxybench(t *testing.T) {
	c, err := parseProxybench([]byte(`{"requests":1000,"errors":2,"rps":500,"p50_ms":1,"p75_ms":2,"p90_ms":3,"p99_ms":4,"p999_ms":5,"p9999_ms":6,"max_ms":7,"target":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Requests != 1000 || c.Errors != 2 || c.RPS != 500 || c.P50ms != 1 || c.P90ms != 3 || c.P99ms != 4 || c.P999ms != 5 || len(c.LatencyMs) != len(Percentiles) {
		t.Fatalf("%+v", c)
	}
	if _, err := parseProxybench([]byte("not json")); err == nil {
		t.Fatal("bad output parsed")
	}
}

func TestScenarioDefaultsAndErrors(t *testing.T) {
	s, err := ParseScenario([]byte("name: q\nsystems: [proxylab-netpoll, haproxy]\nprotocols: [http1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Rounds != 3 || s.Baseline != "haproxy" || s.Connections[0] != 50 || s.CPUs.Proxy != "1" || s.Upstream != "nginx" || s.Profile {
		t.Fatalf("%+v", s)
	}
	for _, bad := range []string{"systems: [a]\n", "systems: [a]\nprotocols: [udp]\n", "systems: [a]\nprotocols: [tcp]\nbogus: 1\n", "systems: [a]\nprotocols: [tcp]\nupstream: apache\n", "systems: [a]\nprotocols: [tcp]\nresponse_sizes: [20, 100]\n", "systems: [a]\nprotocols: [tcp]\nupstream: proxybench\nresponse_sizes: [-1]\n"} {
		if _, err := ParseScenario([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestTinyMatrixEndToEnd runs proxylab and a real haproxy through one short
// round and checks the written results.
func TestTinyMatrixEndToEnd(t *testing.T) {
	for _, tool := range []string{"haproxy", "nginx", "wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make test installs it)", tool)
		}
	}
	becomeSubreaper(t)
	dir := t.TempDir()
	defer noLeftovers(t, dir)
	bin := filepath.Join(dir, "proxylab")
	pb := filepath.Join(dir, "proxybench")
	for target, src := range map[string]string{bin: "../../cmd/proxylab", pb: "../../cmd/proxybench"} {
		if out, err := exec.Command("go", "build", "-o", target, src).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	s, _ := ParseScenario([]byte("name: tiny\nsystems: [proxylab-rawepoll, haproxy, mosn]\nprotocols: [http1, tcp]\nrounds: 2\nduration: 1s\nwarmup: 500ms\nprofile: true\nupstream: proxybench\nresponse_sizes: [20, 4000]\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progressed int
	var totals []int
	cells, profiles, skipped, err := Run(ctx, s, Tools{Proxylab: bin, Proxybench: pb}, dir, func(done, total int, c Cell) { progressed = done; totals = append(totals, total) })
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 16 || progressed != 16 {
		t.Fatalf("%d cells (%d progress calls), want 2 systems × 2 protocols × 2 sizes × 2 rounds", len(cells), progressed)
	}
	for _, total := range totals {
		if total != 16 { // the missing peer is discounted for every protocol from the start
			t.Fatalf("progress totals %v, want 8 throughout", totals)
		}
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "mosn") {
		t.Fatalf("a missing peer must be reported as skipped: %v", skipped)
	}
	for _, c := range cells {
		if !slices.IsSorted(c.LatencyMs) || len(c.LatencyMs) != len(Percentiles) || c.LatencyMs[0] <= 0 {
			t.Fatalf("cell %s/%s latency points %v", c.System, c.Protocol, c.LatencyMs)
		}
		// The size asked for is what came back: body plus a head of < 100 bytes.
		if perResp := c.ReadBytes / float64(c.Requests); perResp < float64(c.ResponseBytes) || perResp > float64(c.ResponseBytes)+100 {
			t.Fatalf("cell %s/%s %d B: %.0f bytes read per response", c.System, c.Protocol, c.ResponseBytes, perResp)
		}
		if c.RPS <= 0 || c.Errors != 0 || c.CPUusPerReq <= 0 || c.HostCPUusPerReq < c.CPUusPerReq || c.P99ms <= 0 || c.PeakRSSKiB <= 0 {
			t.Fatalf("cell %+v", c)
		}
	}
	// One profile per proxylab cell, taken from its admin API, with the
	// proxying work (read/write syscalls) at the top.
	if len(profiles) != 4 {
		t.Fatalf("%d profiles, want proxylab-rawepoll × 2 protocols × 2 sizes", len(profiles))
	}
	for _, p := range profiles {
		if p.System != "proxylab-rawepoll" || p.Seconds <= 0.1 || len(p.Top) == 0 || len(p.raw) == 0 {
			t.Fatalf("profile %+v", p)
		}
		var syscalls bool
		for _, f := range p.Top {
			syscalls = syscalls || strings.Contains(f.Name, "syscall") || strings.Contains(f.Name, "unix.")
			if f.CumPct < f.FlatPct || f.FlatPct <= 0 || f.CumPct > 100.0001 {
				t.Fatalf("%s: %+v", p.Protocol, f)
			}
		}
		if !syscalls {
			t.Errorf("%s profile top lacks syscalls: %+v", p.Protocol, p.Top)
		}
	}
	out := filepath.Join(dir, "results")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "earlier-run.pprof"), []byte("old"), 0o644)
	if err := Write(out, s, Describe(s), cells, profiles, skipped); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "earlier-run.pprof")); err == nil {
		t.Error("a profile of an earlier run was left beside this run's")
	}
	report, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| proxylab-rawepoll | http1 | 50 |", "| haproxy | tcp | 50 |", "1.000 (1.000–1.000)", "mosn", "### CPU profile: proxylab-rawepoll, http1, 50 connections, 4000-byte responses", "| haproxy | tcp | 50 | 4000 |"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, f := range []string{"results.json", "results.csv", "cpu.svg", "latency.svg", "proxylab-rawepoll-tcp-c50-r4000.pprof"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing", f)
		}
	}
}

func TestLatencyChart(t *testing.T) {
	s := &Scenario{Baseline: "haproxy"}
	var cells []Cell
	for round := range 3 {
		for _, sys := range []string{"haproxy", "proxylab-rawepoll"} {
			for _, proto := range []string{"http1", "tcp"} {
				k := float64(round + 1)
				cells = append(cells, Cell{Round: round, System: sys, Protocol: proto, Connections: 50,
					LatencyMs: []float64{0.5 * k, 0.7, 1, 2, 5, 9, 12}})
			}
		}
	}
	cells = append(cells, Cell{System: "nginx", Protocol: "tcp", Connections: 50}) // no distribution: left out
	rows := Summarize(s, cells)
	if got := rows[0].LatencyMs; len(got) != len(Percentiles) || got[0] != 1 { // median of 0.5, 1, 1.5
		t.Fatalf("row latency %v", got)
	}
	svg := LatencyChart(rows)
	if n := strings.Count(svg, "<polyline"); n != 4 {
		t.Fatalf("%d lines, want 2 systems × 2 panels:\n%s", n, svg)
	}
	for _, want := range []string{"http1, 50 connections", "tcp, 50 connections", "99.99%", ">max<", "proxylab-rawepoll: p99 2.00 ms", "0.1 ms", "100 ms"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	if strings.Contains(svg, "nginx") {
		t.Error("a row without a distribution was drawn")
	}
	if empty := LatencyChart(nil); !strings.Contains(empty, "no latency distribution") {
		t.Errorf("empty chart: %s", empty)
	}
}

// TestShippedScenariosParse keeps bench/scenarios loadable.
func TestShippedScenariosParse(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*.yaml")
	if len(files) < 2 {
		t.Fatalf("scenarios: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseScenario(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(s.Systems) == 0 || s.Baseline == "" || !slices.Contains(s.Systems, s.Baseline) {
			t.Errorf("%s: systems %v, baseline %q", f, s.Systems, s.Baseline)
		}
	}
}
