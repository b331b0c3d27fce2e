package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:19201/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.90ms  300.00us   5.00ms   80.00%
  Latency Distribution
     50%  850.00us
     75%    1.00ms
     90%    1.20ms
     99%    2.50ms
  55000 requests in 1.00s, 7.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 3
Requests/sec:  55000.00
`
	c, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if c.Requests != 55000 || c.RPS != 55000 || c.Errors != 6 || c.P50ms != 0.85 || c.P90ms != 1.2 || c.P99ms != 2.5 {
		t.Fatalf("%+v", c)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestScenarioDefaultsAndErrors(t *testing.T) {
	s, err := ParseScenario([]byte("name: q\nsystems: [proxylab-netpoll, haproxy]\nprotocols: [http1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Rounds != 3 || s.Baseline != "haproxy" || s.Connections[0] != 50 || s.CPUs.Proxy != "1" {
		t.Fatalf("%+v", s)
	}
	for _, bad := range []string{"systems: [a]\n", "systems: [a]\nprotocols: [udp]\n", "systems: [a]\nprotocols: [tcp]\nbogus: 1\n"} {
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
	dir := t.TempDir()
	bin := filepath.Join(dir, "proxylab")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/proxylab").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s, _ := ParseScenario([]byte("name: tiny\nsystems: [proxylab-rawepoll, haproxy, mosn]\nprotocols: [http1, tcp]\nrounds: 2\nduration: 1s\nwarmup: 500ms\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progressed int
	cells, skipped, err := Run(ctx, s, Tools{Proxylab: bin}, dir, func(done, total int, c Cell) { progressed = done })
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 8 || progressed != 8 {
		t.Fatalf("%d cells (%d progress calls), want 2 systems × 2 protocols × 2 rounds", len(cells), progressed)
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "mosn") {
		t.Fatalf("a missing peer must be reported as skipped: %v", skipped)
	}
	for _, c := range cells {
		if c.RPS <= 0 || c.Errors != 0 || c.CPUusPerReq <= 0 || c.HostCPUusPerReq < c.CPUusPerReq || c.P99ms <= 0 || c.PeakRSSKiB <= 0 {
			t.Fatalf("cell %+v", c)
		}
	}
	out := filepath.Join(dir, "results")
	if err := Write(out, s, Describe(s), cells, skipped); err != nil {
		t.Fatal(err)
	}
	report, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| proxylab-rawepoll | http1 | 50 |", "| haproxy | tcp | 50 |", "1.000 (1.000–1.000)", "mosn"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, f := range []string{"results.json", "results.csv", "cpu.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing", f)
		}
	}
}
