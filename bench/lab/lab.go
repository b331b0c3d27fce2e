// Package lab runs a benchmark matrix: every system of a scenario (proxylab
// on each transport, haproxy, nginx, envoy when installed) is given a
// config generated from the same scenario, pinned to the proxy CPUs, and
// measured in interleaved rounds (A B C A B C …) by a load generator pinned
// to other CPUs in front of an nginx upstream on the upstream CPUs. Each
// cell records throughput, latency percentiles, errors, the proxy's CPU
// time per request (from /proc, all its processes) and its peak RSS.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/bench/peers"
)

// Scenario is a benchmark matrix description (YAML).
type Scenario struct {
	Name      string   `yaml:"name"`
	Systems   []string `yaml:"systems"`   // proxylab-<transport>, haproxy, nginx, envoy
	Protocols []string `yaml:"protocols"` // http1, tcp, http2 (h2c client, HTTP/1.1 upstream), grpc (h2c both sides)
	// Engines are the crypto engines swept: "none" (plaintext, default)
	// or a proxylab engine name (gotls); with an engine the client speaks
	// TLS to the system under test (peers use their own TLS: OpenSSL) and
	// cells are labelled <protocol>+tls.
	Engines []string `yaml:"engines"`
	// Streams is the HTTP/2 streams each connection keeps in flight
	// (h2load -m) for http2 and grpc; 10 by default.
	Streams     int   `yaml:"streams"`
	Connections []int `yaml:"connections"`
	// ResponseSizes are the response body sizes swept, in bytes; 20 by
	// default. Other sizes need upstream: proxybench (?size=N).
	ResponseSizes []int `yaml:"response_sizes"`
	// RequestSizes are the request body sizes swept, in bytes (POST when
	// > 0); 0 by default (GET).
	RequestSizes []int         `yaml:"request_sizes"`
	Rate         float64       `yaml:"rate"` // 0: closed loop (wrk); >0: open loop (proxybench)
	Duration     time.Duration `yaml:"duration"`
	Warmup       time.Duration `yaml:"warmup"`
	Rounds       int           `yaml:"rounds"`
	Workers      int           `yaml:"workers"`
	Baseline     string        `yaml:"baseline"` // the system ratios are against
	// Profile adds, after a phase's rounds, one unmeasured pass of each
	// proxylab cell under its CPU profiler.
	Profile bool `yaml:"profile"`
	// Upstream is the origin every system forwards to: "nginx" (default)
	// or "proxybench" (`proxybench upstream`); both answer 20 bytes.
	Upstream string `yaml:"upstream"`
	// BasePort, when set, is the first of the loopback ports the run uses
	// (upstreams, then each system and admin API in turn); 0, the default,
	// picks free ports at run time so concurrent runs do not collide.
	BasePort int `yaml:"base_port"`
	CPUs     struct {
		Proxy    string `yaml:"proxy"`
		Load     string `yaml:"load"`
		Upstream string `yaml:"upstream"`
	} `yaml:"cpus"`
}

// ParseScenario reads and defaults a scenario.
func ParseScenario(data []byte) (*Scenario, error) {
	s := &Scenario{Rounds: 3, Duration: 6 * time.Second, Warmup: time.Second, Workers: 1, Baseline: "haproxy", Streams: 10}
	s.CPUs.Proxy, s.CPUs.Load, s.CPUs.Upstream = "1", "0", "0"
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("lab: scenario: %w", err)
	}
	if len(s.Systems) == 0 || len(s.Protocols) == 0 {
		return nil, errors.New("lab: scenario: systems and protocols are required")
	}
	if len(s.ResponseSizes) == 0 {
		s.ResponseSizes = []int{20}
	}
	for i, n := range s.ResponseSizes {
		if n < 0 || n > 16<<20 {
			return nil, fmt.Errorf("lab: scenario: response_sizes[%d]: %d is outside 0..16 MiB", i, n)
		}
	}
	if len(s.Connections) == 0 {
		s.Connections = []int{50}
	}
	if len(s.RequestSizes) == 0 {
		s.RequestSizes = []int{0}
	}
	for i, n := range s.RequestSizes {
		if n < 0 || n > 16<<20 {
			return nil, fmt.Errorf("lab: scenario: request_sizes[%d]: %d is outside 0..16 MiB", i, n)
		}
		if n > 0 && slices.Contains(s.Protocols, "grpc") {
			return nil, fmt.Errorf("lab: scenario: request_sizes[%d]: grpc cells send fixed unary requests; sweep request sizes on http1, http2 or tcp", i)
		}
	}
	switch s.Upstream {
	case "":
		s.Upstream = "nginx"
	case "nginx", "proxybench":
	default:
		return nil, fmt.Errorf("lab: scenario: upstream: %q is neither nginx nor proxybench", s.Upstream)
	}
	if s.Upstream == "nginx" && (len(s.ResponseSizes) != 1 || s.ResponseSizes[0] != 20) {
		return nil, fmt.Errorf("lab: scenario: response_sizes: %v needs upstream: proxybench (the nginx upstream answers 20 bytes)", s.ResponseSizes)
	}
	for _, p := range s.Protocols {
		switch p {
		case "http1", "tcp", "bolt", "dubbo":
		case "http2":
		case "grpc":
			if s.Rate > 0 {
				return nil, fmt.Errorf("lab: scenario: rate: open loop is HTTP/1.1 and HTTP/2; grpc runs closed loop (h2load)")
			}
		default:
			return nil, fmt.Errorf("lab: scenario: unknown protocol %q (http1, tcp, http2, grpc, bolt, dubbo)", p)
		}
	}
	if len(s.Engines) == 0 {
		s.Engines = []string{"none"}
	}
	for i, e := range s.Engines {
		if e != "none" && e != "gotls" {
			return nil, fmt.Errorf("lab: scenario: engines[%d]: unknown engine %q (none, gotls)", i, e)
		}
	}
	if s.Streams < 1 {
		return nil, fmt.Errorf("lab: scenario: streams: must be >= 1")
	}
	return s, nil
}

// Cell is one measurement.
type Cell struct {
	Round         int    `json:"round"`
	System        string `json:"system"`
	Protocol      string `json:"protocol"` // with "+tls" when the client spoke TLS
	Engine        string `json:"engine"`   // the system's crypto engine: none, gotls, openssl
	Connections   int    `json:"connections"`
	ResponseBytes int    `json:"response_bytes"`
	RequestBytes  int    `json:"request_bytes"`
	// ReadBytes is what the load generator received (wrk's "read"),
	// heads included: a check that the size asked for was served.
	ReadBytes float64 `json:"read_bytes"`
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	RPS       float64 `json:"rps"`
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	P999ms    float64 `json:"p999_ms"`
	// LatencyMs holds the latency at each of Percentiles, for CDF plots.
	LatencyMs   []float64 `json:"latency_ms_at_percentiles"`
	CPUusPerReq float64   `json:"proxy_cpu_us_per_request"`
	// HostCPUusPerReq is the whole machine's busy CPU time per request:
	// proxy, load generator and upstream together.
	HostCPUusPerReq float64 `json:"host_cpu_us_per_request"`
	PeakRSSKiB      int     `json:"proxy_peak_rss_kib"`
	// ProxyCPUs and ProxyThreads are what the system actually ran with
	// (its affinity and thread count from /proc), not what was asked.
	ProxyCPUs    string `json:"proxy_cpus_actual"`
	ProxyThreads int    `json:"proxy_threads"`
}

// Tools locates the binaries a run needs.
type Tools struct {
	Proxylab, Proxybench string // built binaries
	// Builds are other proxylab binaries by label: a system named
	// proxylab-<transport>@<label> runs one (see AddBuild).
	Builds map[string]string
	wrkDir string // where Run writes the wrk scripts, one per request size
}

// Run measures the whole matrix, calling progress after each cell. Each
// protocol is a phase: every system is started with its generated config
// for that protocol, warmed up, measured round by round (all systems each
// round), and stopped.
func Run(ctx context.Context, s *Scenario, tools Tools, workdir string, progress func(done, total int, c Cell)) ([]Cell, []Profile, []string, error) {
	var skipped []string
	var profiles []Profile
	tools.wrkDir = workdir
	for _, n := range s.RequestSizes {
		if err := os.WriteFile(tools.wrkScriptFor(n), []byte(wrkScriptFor(n)), 0o644); err != nil {
			return nil, nil, nil, fmt.Errorf("lab: %w", err)
		}
	}
	pa := &ports{next: s.BasePort}
	addrs, err := newRunAddrs(pa)
	if err != nil {
		return nil, nil, nil, err
	}
	up, err := startUpstream(s, tools, workdir, addrs.upstream)
	if err != nil {
		return nil, nil, nil, err
	}
	defer stop(up)
	extra := map[string][]string{"grpc": {"-grpc", "-listen", addrs.grpc}}
	for p, addr := range addrs.rpc {
		extra[p] = []string{"-rpc", p, "-listen", addr}
	}
	for _, p := range s.Protocols {
		args, ok := extra[p]
		if !ok {
			continue
		}
		cmd := exec.Command("taskset", append([]string{"-c", s.CPUs.Upstream, tools.Proxybench, "upstream", "-size", "20"}, args...)...)
		if err := start(cmd); err != nil {
			return nil, nil, nil, fmt.Errorf("lab: %s upstream: %w", p, err)
		}
		defer stop(cmd)
		if err := waitPort(args[len(args)-1], cmd); err != nil {
			return nil, nil, nil, err
		}
	}
	phases := s.phases()
	if slices.ContainsFunc(phases, func(ph phase) bool { return ph.tls }) {
		if err := makeCerts(tools, workdir); err != nil {
			return nil, nil, nil, err
		}
	}
	points := len(s.points())
	total := s.Rounds * len(phases) * points * len(s.Systems)
	var cells []Cell
	// A system that cannot start (a peer not installed) is assumed missing
	// for the remaining protocols too, so the time left is right from the
	// first phase; the estimate is corrected if it starts after all.
	missing := map[string]bool{}
	for pi, ph := range phases {
		p := ph.label
		cellsLeft := s.Rounds * points * (len(phases) - pi)
		var systems []*system
		for _, name := range s.Systems {
			sy, err := startSystem(name, ph, addrs, pa, s, tools, workdir)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s (%s): %v", name, p, err))
				if !missing[name] {
					missing[name] = true
					total -= cellsLeft
				}
				continue
			}
			if missing[name] {
				delete(missing, name)
				total += cellsLeft
			}
			systems = append(systems, sy)
		}
		err := func() error {
			defer func() {
				for _, sy := range systems {
					stop(sy.cmd)
				}
			}()
			for _, sy := range systems {
				if _, err := load(ctx, s, tools, ph, sy.port, s.points()[0], s.Warmup); err != nil {
					return fmt.Errorf("lab: warm-up of %s %s: %w", sy.name, p, err)
				}
			}
			for r := 1; r <= s.Rounds; r++ {
				for _, pt := range s.points() {
					for _, sy := range systems { // interleaved: every system each round
						pid := sy.cmd.Process.Pid
						t0, h0 := cpuTicks(pid), hostBusyTicks()
						c, err := load(ctx, s, tools, ph, sy.port, pt, s.Duration)
						t1, h1 := cpuTicks(pid), hostBusyTicks()
						if err != nil {
							return err
						}
						c.Round, c.System, c.Protocol, c.Connections, c.ResponseBytes = r, sy.name, p, pt.conns, pt.size
						c.Engine, c.RequestBytes = sy.engine, pt.req
						if c.Requests > 0 {
							c.CPUusPerReq = float64(t1-t0) / float64(clockTicks) * 1e6 / float64(c.Requests)
							c.HostCPUusPerReq = float64(h1-h0) / float64(clockTicks) * 1e6 / float64(c.Requests)
						}
						c.PeakRSSKiB = peakRSS(pid)
						c.ProxyCPUs, c.ProxyThreads = affinity(pid)
						cells = append(cells, c)
						if progress != nil {
							progress(len(cells), total, c)
						}
					}
				}
			}
			if !s.Profile {
				return nil
			}
			for _, pt := range s.points() {
				for _, sy := range systems {
					if sy.admin == "" {
						continue
					}
					pr, err := profileCell(ctx, s, tools, sy, ph, pt)
					if err != nil {
						return err
					}
					profiles = append(profiles, pr)
				}
			}
			return nil
		}()
		if err != nil {
			return cells, profiles, skipped, err
		}
	}
	if len(cells) == 0 {
		return nil, nil, skipped, errors.New("lab: no system could be measured")
	}
	return cells, profiles, skipped, nil
}

const clockTicks = 100 // USER_HZ on Linux

// cpuTicks sums utime+stime of pid and its children (nginx workers).
func cpuTicks(pid int) int64 {
	pids := []int{pid}
	if out, err := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	var total int64
	for _, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name (which may contain spaces).
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + st
	}
	return total
}

// hostBusyTicks is the machine's non-idle CPU time (all CPUs) from
// /proc/stat: user, nice, system, irq, softirq and steal.
func hostBusyTicks() int64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line := strings.SplitN(string(data), "\n", 2)[0]
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i > 7 { // guest times are already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return busy
}

// affinity reads the CPUs a process may run on and its threads (all its
// processes' threads for a master with workers, as nginx).
func affinity(pid int) (cpus string, threads int) {
	pids := []int{pid}
	if out, err := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	for i, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			switch {
			case k == "Cpus_allowed_list" && (i == len(pids)-1 || cpus == ""):
				cpus = v
			case k == "Threads":
				n, _ := strconv.Atoi(v)
				threads += n
			}
		}
	}
	return cpus, threads
}

func peakRSS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}

func startUpstream(s *Scenario, tools Tools, dir, upstreamAddr string) (*exec.Cmd, error) {
	if s.Upstream == "proxybench" {
		cmd := exec.Command("taskset", "-c", s.CPUs.Upstream, tools.Proxybench, "upstream", "-listen", upstreamAddr, "-size", "20")
		if err := start(cmd); err != nil {
			return nil, fmt.Errorf("lab: upstream proxybench: %w", err)
		}
		return cmd, waitPort(upstreamAddr, cmd)
	}
	cpus := s.CPUs.Upstream
	d := filepath.Join(dir, "upstream")
	os.MkdirAll(filepath.Join(d, "logs"), 0o755)
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/logs/error.log crit;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen %s; location / { return 200 "01234567890123456789"; } }
}
`, d, d, upstreamAddr)
	os.WriteFile(filepath.Join(d, "nginx.conf"), []byte(conf), 0o644)
	cmd := exec.Command("taskset", "-c", cpus, "nginx", "-p", d, "-c", filepath.Join(d, "nginx.conf"))
	if err := start(cmd); err != nil {
		return nil, fmt.Errorf("lab: upstream nginx: %w", err)
	}
	return cmd, waitPort(upstreamAddr, cmd)
}

// point is one load point of a phase: connections × response size ×
// request size.
type point struct{ conns, size, req int }

func (s *Scenario) points() []point {
	var ps []point
	for _, c := range s.Connections {
		for _, n := range s.ResponseSizes {
			for _, q := range s.RequestSizes {
				ps = append(ps, point{c, n, q})
			}
		}
	}
	return ps
}

// system is a running system under test.
type system struct {
	engine string // its crypto engine, "none" in plaintext
	name   string
	cmd    *exec.Cmd
	port   int
	admin  string // proxylab's admin API address
}

// profileCell runs one cell's load while proxylab profiles itself.
func profileCell(ctx context.Context, s *Scenario, tools Tools, sy *system, ph phase, pt point) (Profile, error) {
	protocol := ph.label
	pr := Profile{System: sy.name, Protocol: protocol, Connections: pt.conns, ResponseBytes: pt.size, RequestBytes: pt.req,
		File: fmt.Sprintf("%s-%s-c%d-r%d.pprof", sy.name, protocol, pt.conns, pt.size)}
	if pt.req > 0 {
		pr.File = fmt.Sprintf("%s-%s-c%d-r%d-q%d.pprof", sy.name, protocol, pt.conns, pt.size, pt.req)
	}
	type fetched struct {
		raw []byte
		err error
	}
	ch := make(chan fetched, 1)
	go func() {
		raw, err := fetchProfile(ctx, sy.admin, s.Duration)
		ch <- fetched{raw, err}
	}()
	if _, err := load(ctx, s, tools, ph, sy.port, pt, s.Duration); err != nil {
		return pr, fmt.Errorf("lab: profiling %s %s: %w", sy.name, protocol, err)
	}
	f := <-ch
	if f.err != nil {
		return pr, f.err
	}
	secs, top, err := summarizeProfile(f.raw, 12)
	if err != nil {
		return pr, err
	}
	pr.Seconds, pr.Top, pr.raw = secs, top, f.raw
	return pr, nil
}

func startSystem(name string, ph phase, addrs *runAddrs, pa *ports, s *Scenario, tools Tools, dir string) (*system, error) {
	protocol := ph.proto
	sysName, build := splitBuild(name)
	gen, transport := sysName, ""
	proxylab := tools.Proxylab
	if strings.HasPrefix(sysName, "proxylab") {
		gen, transport = "proxylab", strings.TrimPrefix(strings.TrimPrefix(sysName, "proxylab"), "-")
		if transport == "" {
			transport = "netpoll"
		}
	}
	if build != "" {
		if proxylab = tools.Builds[build]; gen != "proxylab" || proxylab == "" {
			return nil, fmt.Errorf("no proxylab build %q", build)
		}
	}
	g, ok := peers.Generators[gen]
	if !ok {
		return nil, fmt.Errorf("no config generator (have %v)", peers.Names())
	}
	up := addrs.upstream
	if protocol == "grpc" {
		up = addrs.grpc
	} else if a, ok := addrs.rpc[protocol]; ok {
		up = a
	}
	port, err := pa.take()
	if err != nil {
		return nil, err
	}
	ps := peers.Scenario{Protocol: protocol, Listen: fmt.Sprintf("127.0.0.1:%d", port), Upstreams: []string{up}, Workers: s.Workers}
	engine := "none"
	if ph.tls {
		c := certFiles(dir)
		ps.TLS = &c
		engine = "openssl" // what haproxy, nginx, envoy (BoringSSL) and mosn use; proxylab says below
		if gen == "proxylab" {
			ps.TLS.Engine, engine = ph.engine, ph.engine
		} else if gen == "envoy" {
			engine = "boringssl"
		} else if gen == "mosn" {
			engine = "gotls"
		}
	}
	if gen == "proxylab" && s.Profile {
		if ps.Admin, err = pa.addr(); err != nil {
			return nil, err
		}
	}
	conf, err := g(ps)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.conf", name, ph.label))
	var argv []string
	switch gen {
	case "proxylab":
		argv = []string{proxylab, "run", "-c", path, "--transport", transport, "--cpus", s.CPUs.Proxy, "--log-level", "warn"}
	case "haproxy":
		argv = []string{"haproxy", "-f", path, "-db"}
	case "nginx":
		conf = "pid " + filepath.Join(dir, name+"-"+ph.label+".pid") + ";\n" + conf
		argv = []string{"nginx", "-p", "/usr/share/nginx", "-c", path}
	case "envoy":
		argv = []string{"envoy", "-c", path, "--concurrency", strconv.Itoa(max(s.Workers, 1))}
	case "mosn":
		argv = []string{"mosn", "start", "-c", path}
	default:
		return nil, fmt.Errorf("running %s is not supported", gen)
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%s not installed", argv[0])
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", s.CPUs.Proxy}, argv...)...)
	cmd.Stderr = io.Discard
	if err := start(cmd); err != nil {
		return nil, err
	}
	if err := waitPort(fmt.Sprintf("127.0.0.1:%d", port), cmd); err != nil {
		stop(cmd)
		return nil, err
	}
	return &system{name: name, cmd: cmd, port: port, admin: ps.Admin, engine: engine}, nil
}

func waitPort(addr string, cmd *exec.Cmd) error {
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("exited")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening", addr)
}

// Percentiles are the points of each cell's latency distribution kept for
// the CDF plot (100 is the maximum).
var Percentiles = []float64{50, 75, 90, 99, 99.9, 99.99, 100}

// wrkScriptFor is wrkScript, posting n bytes per request when n > 0.
func wrkScriptFor(n int) string {
	if n == 0 {
		return wrkScript
	}
	return fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", %d)\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n", n) + wrkScript
}

func (t Tools) wrkScriptFor(n int) string {
	return filepath.Join(t.wrkDir, fmt.Sprintf("percentiles-q%d.lua", n))
}

// wrkScript makes wrk print the latency at each of Percentiles, in µs, as
// "pct P US" lines after its summary.
const wrkScript = `done = function(summary, latency, requests)
  for _, p in ipairs({50, 75, 90, 99, 99.9, 99.99}) do
    io.write(string.format("pct %g %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("pct 100 %d\n", latency.max))
end
`

// load runs one cell: wrk for closed loop, proxybench for open loop, on the
// load CPUs; h2load for http2 and grpc. http1 and tcp carry HTTP/1.1 to the
// upstream (tcp_proxy forwards it as bytes).
func load(ctx context.Context, s *Scenario, tools Tools, ph phase, port int, pt point, d time.Duration) (Cell, error) {
	conns, size := pt.conns, pt.size
	if ph.proto == "grpc" || ph.proto == "http2" && s.Rate == 0 {
		return loadH2(ctx, s, tools, ph, port, pt, d)
	}
	path := "/"
	if s.Upstream == "proxybench" {
		path = "/?size=" + strconv.Itoa(size)
	}
	isRPC := slices.Contains(rpcProtocols, ph.proto)
	if s.Rate > 0 || isRPC {
		// proxybench's own generator: HTTP/1.1, HTTP/2 (s.Streams per
		// connection) or an RPC protocol, TLS when the phase has an engine;
		// closed loop when no rate is set.
		proto := "http1"
		if ph.proto == "http2" || isRPC {
			proto = ph.proto
		}
		out, err := exec.CommandContext(ctx, "taskset", "-c", s.CPUs.Load, tools.Proxybench, "load", "-json", "-target", fmt.Sprintf("127.0.0.1:%d", port),
			"-protocol", proto, "-m", strconv.Itoa(s.Streams), "-tls="+strconv.FormatBool(ph.tls),
			"-c", strconv.Itoa(conns), "-d", d.String(), "-rate", strconv.FormatFloat(s.Rate, 'f', -1, 64), "-path", path, "-body", strconv.Itoa(pt.req)).Output()
		if err != nil {
			return Cell{}, fmt.Errorf("lab: proxybench: %w", err)
		}
		return parseProxybench(out)
	}
	url := fmt.Sprintf("%s://127.0.0.1:%d%s", ph.scheme(), port, path)
	out, err := exec.CommandContext(ctx, "taskset", "-c", s.CPUs.Load, "wrk", "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", max(int(d.Seconds()), 1)), "-s", tools.wrkScriptFor(pt.req), url).Output()
	if err != nil {
		return Cell{}, fmt.Errorf("lab: wrk: %w", err)
	}
	return parseWrk(string(out))
}

// parseProxybench reads `proxybench load -json`.
func parseProxybench(out []byte) (Cell, error) {
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		return Cell{}, fmt.Errorf("lab: proxybench output: %w", err)
	}
	f := func(k string) float64 { v, _ := raw[k].(float64); return v }
	c := Cell{Requests: uint64(f("requests")), Errors: uint64(f("errors")), RPS: f("rps")}
	for _, k := range []string{"p50_ms", "p75_ms", "p90_ms", "p99_ms", "p999_ms", "p9999_ms", "max_ms"} {
		c.LatencyMs = append(c.LatencyMs, f(k))
	}
	c.setPercentiles()
	return c, nil
}

// setPercentiles fills the named percentiles from LatencyMs.
func (c *Cell) setPercentiles() {
	if len(c.LatencyMs) == len(Percentiles) {
		c.P50ms, c.P90ms, c.P99ms, c.P999ms = c.LatencyMs[0], c.LatencyMs[2], c.LatencyMs[3], c.LatencyMs[4]
	}
}

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkPct    = regexp.MustCompile(`(?m)^pct ([\d.]+) (\d+)$`)
)

// parseWrk reads wrk's summary (requests, errors) and the "pct" lines of
// wrkScript. Every percentile must be present.
func parseWrk(out string) (Cell, error) {
	var c Cell
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return c, fmt.Errorf("lab: unexpected wrk output: %q", out)
	}
	c.Requests, _ = strconv.ParseUint(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	secs *= map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m[3]]
	if secs > 0 {
		c.RPS = float64(c.Requests) / secs
	}
	read, _ := strconv.ParseFloat(m[4], 64)
	c.ReadBytes = read * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[5]]
	if e := wrkSocket.FindStringSubmatch(out); e != nil {
		for _, x := range e[1:] {
			n, _ := strconv.ParseUint(x, 10, 64)
			c.Errors += n
		}
	}
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		n, _ := strconv.ParseUint(e[1], 10, 64)
		c.Errors += n
	}
	pcts := wrkPct.FindAllStringSubmatch(out, -1)
	if len(pcts) != len(Percentiles) {
		return c, fmt.Errorf("lab: wrk printed %d of %d percentiles: %q", len(pcts), len(Percentiles), out)
	}
	for i, l := range pcts {
		if p, _ := strconv.ParseFloat(l[1], 64); p != Percentiles[i] {
			return c, fmt.Errorf("lab: wrk percentile %d is %s, want %g", i, l[1], Percentiles[i])
		}
		us, _ := strconv.ParseFloat(l[2], 64)
		c.LatencyMs = append(c.LatencyMs, us/1e3)
	}
	c.setPercentiles()
	return c, nil
}

// phase is one protocol × crypto engine of a run: every system is started
// for it, measured, and stopped.
type phase struct {
	proto, engine string
	label         string // proto, or proto+"+tls"
	tls           bool
}

func (s *Scenario) phases() []phase {
	var out []phase
	for _, p := range s.Protocols {
		for _, e := range s.Engines {
			ph := phase{proto: p, engine: e, label: p}
			if e != "none" {
				ph.tls, ph.label = true, p+"+tls"
			}
			out = append(out, ph)
		}
	}
	return out
}

func (ph phase) scheme() string {
	if ph.tls {
		return "https"
	}
	return "http"
}

// certFiles are the test certificates makeCerts writes into dir.
func certFiles(dir string) peers.TLSFiles {
	d := filepath.Join(dir, "certs")
	return peers.TLSFiles{Cert: filepath.Join(d, "server.pem"), Key: filepath.Join(d, "server-key.pem"), Combined: filepath.Join(d, "server-combined.pem")}
}

// makeCerts makes a test CA and an ECDSA P-256 server certificate with
// `proxylab certs`, and the cert+key file haproxy wants.
func makeCerts(tools Tools, dir string) error {
	c := certFiles(dir)
	out, err := exec.Command(tools.Proxylab, "certs", "-dir", filepath.Dir(c.Cert)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: proxylab certs: %w: %s", err, out)
	}
	cert, err := os.ReadFile(c.Cert)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	key, err := os.ReadFile(c.Key)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(c.Combined, append(cert, key...), 0o600)
}
