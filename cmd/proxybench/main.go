// Command proxybench is the benchmark lab's command line: `matrix` runs a
// scenario against proxylab and its peers (bench/lab), `load` one load cell
// with proxylab's own generator (bench/loadgen), `upstream` the origin server
// (bench/upstream).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/proxylab/proxylab/bench/lab"
	"github.com/proxylab/proxylab/bench/loadgen"
	"github.com/proxylab/proxylab/bench/upstream"
	"github.com/proxylab/proxylab/offload/gm/tlcp"
	"github.com/proxylab/proxylab/offload/gotls"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `proxybench matrix -scenario FILE [-out DIR] [-proxylab BIN] [-proxy-cpus L] [-load-cpus L] [-upstream-cpus L]
                  [-base GIT-REF [-base-first]]
proxybench upstream [-listen ADDR] [-size BYTES] [-delay DURATION] [-grpc | -rpc bolt|dubbo | -tcp-echo]
proxybench load -target HOST:PORT [-protocol http1|http2|tcp|bolt|dubbo|handshake] [-c N] [-d DURATION]
                [-rate RPS] [-tls [-engine go|tlcp] [-tlcp-suite NAME] [-curves LIST] [-resume]]
                [-path P] [-host H] [-body BYTES] [-echo BYTES] [-json]

The handshake protocol opens a connection per request: dial, TLS or TLCP
handshake, close (full handshakes unless -resume).

Closed loop by default (maximum throughput); with -rate, open loop at that
many requests per second, latency measured from when each request was due
(coordinated omission avoided).
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "matrix" {
		return matrix(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "upstream" {
		return serveUpstream(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "load" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Target, "target", "", "host:port to load")
	fs.StringVar(&cfg.Protocol, "protocol", "http1", "http1, http2 or tcp (echo)")
	fs.IntVar(&cfg.Connections, "c", 50, "connections")
	fs.IntVar(&cfg.Streams, "m", 1, "HTTP/2 requests in flight per connection")
	fs.BoolVar(&cfg.TLS, "tls", false, "speak TLS to the target (not verified; ALPN h2 for http2)")
	fs.StringVar(&cfg.Engine, "engine", "go", "with -tls: go (crypto/tls) or tlcp (TLCP 1.1, GB/T 38636)")
	suite := fs.String("tlcp-suite", "", "with -engine tlcp: offer only this suite (ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ...)")
	curves := fs.String("curves", "", "with -engine go: key-exchange groups offered, comma-separated (X25519MLKEM768, X25519, P256, P384); default crypto/tls's")
	fs.BoolVar(&cfg.Resume, "resume", false, "resume the previous session on each new connection")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "duration")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total requests per second (0: closed loop)")
	fs.StringVar(&cfg.Path, "path", "/", "HTTP path")
	fs.StringVar(&cfg.Host, "host", "", "HTTP Host (default: the target)")
	fs.IntVar(&cfg.RequestBody, "body", 0, "HTTP request body bytes (POST when > 0)")
	fs.IntVar(&cfg.EchoSize, "echo", 64, "TCP echo bytes per round trip")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if cfg.Target == "" {
		fmt.Fprint(stderr, "proxybench: -target is required\n\n"+usage)
		return 2
	}
	if *suite != "" {
		id, ok := tlcp.SuiteByName(*suite)
		if !ok {
			fmt.Fprintf(stderr, "proxybench: -tlcp-suite: unknown suite %q\n", *suite)
			return 2
		}
		cfg.TLCPSuite = id
	}
	if *curves != "" {
		ids, err := gotls.ParseCurves(strings.Split(*curves, ","))
		if err != nil {
			fmt.Fprintf(stderr, "proxybench: -curves: %v\n", err)
			return 2
		}
		cfg.Curves = ids
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	q := func(p float64) float64 { return float64(res.Latency.Quantile(p)) / float64(time.Millisecond) }
	out := map[string]any{
		"target": cfg.Target, "protocol": cfg.Protocol, "connections": cfg.Connections, "rate": cfg.Rate,
		"requests": res.Requests, "errors": res.Errors, "seconds": res.Elapsed.Seconds(), "rps": res.RPS(),
		"mean_ms": float64(res.Latency.Mean()) / float64(time.Millisecond),
		"p50_ms":  q(0.5), "p75_ms": q(0.75), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999), "p9999_ms": q(0.9999),
		"max_ms": float64(res.Latency.Max()) / float64(time.Millisecond),
	}
	if res.FirstError != nil {
		out["first_error"] = res.FirstError.Error()
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(out)
	} else {
		fmt.Fprintf(stdout, "%s %s: %d requests in %.1fs = %.0f req/s, %d errors\nlatency ms: mean %.3f p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
			cfg.Protocol, cfg.Target, res.Requests, res.Elapsed.Seconds(), res.RPS(), res.Errors,
			out["mean_ms"], out["p50_ms"], out["p90_ms"], out["p99_ms"], out["p999_ms"], out["max_ms"])
		if res.FirstError != nil {
			fmt.Fprintf(stdout, "first error: %v\n", res.FirstError)
		}
	}
	if res.Requests == 0 {
		return 1
	}
	return 0
}

// matrix runs a scenario and writes its results.
func matrix(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("scenario", "", "scenario YAML")
	out := fs.String("out", "", "results directory (default results/<date>-<host>/<scenario name>)")
	proxylab := fs.String("proxylab", "bin/proxylab", "proxylab binary")
	proxyCPUs := fs.String("proxy-cpus", "", "CPUs for the systems under test (overrides the scenario), e.g. 2-3")
	loadCPUs := fs.String("load-cpus", "", "CPUs for the load generator, e.g. 4-7")
	upCPUs := fs.String("upstream-cpus", "", "CPUs for the upstream, e.g. 8-9")
	baseRef := fs.String("base", "", "also run proxylab built from this git ref (of the repository in the current directory) as proxylab-<transport>@<ref>, beside each proxylab system in every round")
	baseFirst := fs.Bool("base-first", false, "with -base: the other build runs before the current one in each round (default after)")
	basePort := fs.Int("base-port", 0, "first loopback port of the run (upstreams, then systems and admin APIs in turn); 0: the scenario's base_port, else free ports picked at run time")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(stderr, "proxybench:", err)
		return 2
	}
	sc, err := lab.ParseScenario(data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{{*proxyCPUs, &sc.CPUs.Proxy}, {*loadCPUs, &sc.CPUs.Load}, {*upCPUs, &sc.CPUs.Upstream}} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if *basePort > 0 {
		sc.BasePort = *basePort
	}
	self, _ := os.Executable()
	tools := lab.Tools{Proxylab: *proxylab, Proxybench: self}
	if abs, err := filepath.Abs(tools.Proxylab); err == nil {
		tools.Proxylab = abs
	}
	if *out == "" {
		host, _ := os.Hostname()
		*out = filepath.Join("results", time.Now().Format("2006-01-02")+"-"+host, sc.Name)
	}
	work, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	if *baseRef != "" {
		fmt.Fprintf(stderr, "building proxylab at %s …\n", *baseRef)
		bin, err := lab.BuildRef(".", *baseRef, work)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		tools.Builds = map[string]string{*baseRef: bin}
		sc.AddBuild(*baseRef, *baseFirst)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	cells, profiles, skipped, err := lab.Run(ctx, sc, tools, work, func(done, total int, c lab.Cell) {
		left := time.Duration(float64(time.Since(start)) / float64(done) * float64(total-done)).Round(time.Second)
		fmt.Fprintf(stderr, "\r[%-30s] %d/%d cells, %v left — %s %s: %.0f req/s, %.2f µs/req   ",
			strings.Repeat("#", 30*done/max(total, 1)), done, total, left, c.System, c.Protocol, c.RPS, c.CPUusPerReq)
	})
	fmt.Fprintln(stderr)
	for _, sk := range skipped {
		fmt.Fprintln(stderr, "skipped:", sk)
	}
	if err != nil && len(cells) == 0 {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if werr := lab.Write(*out, sc, lab.Describe(sc), cells, profiles, skipped); werr != nil {
		fmt.Fprintln(stderr, werr)
		return 1
	}
	fmt.Fprintf(stdout, "results in %s (results.json, results.csv, report.md, cpu.svg, latency.svg)\n", *out)
	if err != nil {
		fmt.Fprintln(stderr, "incomplete:", err)
		return 1
	}
	return 0
}

// serveUpstream runs the benchmark origin server until SIGINT or SIGTERM.
func serveUpstream(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:19190", "address to listen on")
	var cfg upstream.Config
	fs.IntVar(&cfg.Size, "size", 20, "response body bytes (per request: ?size=N)")
	fs.DurationVar(&cfg.Delay, "delay", 0, "delay before each response (per request: ?delay=D)")
	grpcMode := fs.Bool("grpc", false, "serve gRPC (the interop TestService's UnaryCall, -size bytes) instead of HTTP/1.1")
	rpcMode := fs.String("rpc", "", "serve an RPC protocol (bolt, dubbo) instead of HTTP/1.1: -size-byte success responses")
	echoMode := fs.Bool("tcp-echo", false, "echo raw TCP bytes instead of HTTP/1.1 (for -protocol tcp loads)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.Size < 0 || cfg.Delay < 0 {
		fmt.Fprintln(stderr, "proxybench: upstream: -size and -delay must not be negative")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "proxybench:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *echoMode {
		go upstream.ServeEcho(ln)
		fmt.Fprintf(stdout, "TCP echo upstream listening on %s\n", ln.Addr())
		<-ctx.Done()
		ln.Close()
		return 0
	}
	if *rpcMode != "" {
		codec := upstream.RPCCodec(*rpcMode)
		if codec == nil {
			fmt.Fprintf(stderr, "proxybench: upstream: unknown RPC protocol %q (bolt, dubbo)\n", *rpcMode)
			return 2
		}
		go upstream.ServeRPC(ln, codec, cfg.Size)
		fmt.Fprintf(stdout, "%s upstream listening on %s (%d-byte responses)\n", *rpcMode, ln.Addr(), cfg.Size)
		<-ctx.Done()
		ln.Close()
		return 0
	}
	if *grpcMode {
		stopGRPC := upstream.ServeGRPC(ln, cfg.Size)
		fmt.Fprintf(stdout, "gRPC upstream listening on %s (%s, %d-byte payloads)\n", ln.Addr(), upstream.GRPCMethod, cfg.Size)
		<-ctx.Done()
		stopGRPC()
		return 0
	}
	s := upstream.Serve(ln, cfg)
	fmt.Fprintf(stdout, "upstream listening on %s (%d-byte responses, POST /echo echoes)\n", s.Addr(), cfg.Size)
	<-ctx.Done()
	s.Close()
	return 0
}
