// Command proxylab is the proxy: `proxylab run`, `proxylab validate`,
// `proxylab version`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/server"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	registerBuiltins()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `proxylab — a Go L4/L7 proxy built as a performance lab

usage:
  proxylab run [-c FILE] [--transport NAME] [--cpus LIST] [--workers N] [--log-level LEVEL] [--cpuprofile FILE]
               [--upgrade-socket PATH] [--upgrade-from PATH]   (hot upgrade: docs/operating.md)
               [--xds ADDR [--xds-delta] [--node-id ID] [--node-cluster NAME]]   (FILE may be an Envoy v3 bootstrap)
  proxylab validate -c FILE
  proxylab certs [-dir DIR] [-hosts a,b] [-key ecdsa|rsa]   (a test CA and certificates)
  proxylab version

With no -c, run serves the embedded default config (127.0.0.1:8080 in front of
a built-in demo upstream).
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "certs":
		return cmdCerts(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "proxylab %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "proxylab: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// known is what the registered plugins tell core/config: their names and
// the decoders of the settings they own.
func known() config.Known {
	k := config.Known{Transports: transport.Names(), LBs: upstream.LBNames(), Engines: offload.Names(),
		Codecs: server.KnownCodecs(), DefaultProtocol: defaultProtocol,
		DefaultLB: upstream.DefaultLB, LBOptions: upstream.DecodeLBOptions,
		HTTPFilter: filter.DecodeConfig, HTTPFilterOverride: filter.DecodeOverride,
		ListenerFilter:   network.DecodeListenerFilter,
		DefaultTransport: defaultTransport, DefaultEngine: defaultEngine,
		TransportOptions:  map[string]func(*yaml.Node, string, bool) (any, []error){},
		EngineCertOptions: map[string]func(*yaml.Node, string) (any, []error){},
		ListenerTLSBlocks: map[string]func(*yaml.Node, string, string) (any, []error){}}
	for name, dec := range transport.OptionsDecoders() {
		k.TransportOptions[name] = dec
	}
	for name, dec := range offload.CertOptionsDecoders() {
		k.EngineCertOptions[name] = dec
	}
	for key, dec := range offload.ListenerBlockDecoders() {
		k.ListenerTLSBlocks[key] = dec
	}
	return k
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "proxylab validate: -c FILE is required")
		return 2
	}
	if _, err := validateFile(*file); err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintf(stderr, "%s: %s\n", *file, e.Error())
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

func cmdRun(args []string, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config file (default: the embedded config)")
	tname := fs.String("transport", "", "transport, overriding the file: "+strings.Join(transport.Names(), ", "))
	cpus := fs.String("cpus", "", "pin the process to these CPUs, e.g. 0-1 or 2,4 (sets GOMAXPROCS to match)")
	workers := fs.Int("workers", -1, "event-loop workers for reactor transports (0: one per CPU)")
	levelFlag := fs.String("log-level", "info", "debug, info, warn or error")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	xf := addXDSFlags(fs)
	cgroup := fs.String("cgroup", "", "sockmap transport: the cgroup v2 directory to attach to (created and joined if missing), overriding the file")
	var uf upgradeFlags
	uf.register(fs)
	watch := fs.Bool("watch", false, "reload the config file when it changes (polls its mtime and size every second); SIGHUP and POST /reload always reload")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	up, stderr := newUpgrader(uf, stderr)
	defer up.finish(&code)
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*levelFlag)); err != nil {
		fmt.Fprintf(stderr, "proxylab: --log-level: %v\n", err)
		return 2
	}
	level := new(slog.LevelVar) // /logging on the admin API changes it live
	level.Set(lvl)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if err := up.takeOver(log); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	cfg, err := xf.load(*file, known())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "proxylab: --cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "proxylab: --cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *tname != "" && !transport.Registered(*tname) {
		fmt.Fprintf(stderr, "proxylab: --transport: unknown transport %q (available: %s)\n", *tname, strings.Join(transport.Names(), ", "))
		return 2
	}
	// The flags override the file, at start and on every reload.
	override := func(cfg *config.Config) {
		if *tname != "" {
			cfg.Transport = *tname
		}
		if *cpus != "" {
			cfg.CPUs = *cpus
		}
		if *cgroup != "" {
			setCgroup(cfg, *cgroup)
		}
		if *workers >= 0 {
			cfg.Workers = *workers
		}
	}
	override(cfg)
	var pinned []int
	if cfg.CPUs != "" {
		list, err := config.ParseCPUList(cfg.CPUs)
		if err == nil {
			pinned, err = pinCPUs(list)
		}
		if err != nil {
			fmt.Fprintf(stderr, "proxylab: --cpus: %v\n", err)
			return 1
		}
	}
	tr, err := transport.New(cfg.Transport, transport.Options{Workers: cfg.Workers, CPUs: pinned, Config: cfg.Plugins[cfg.Transport], Inherited: up.inherited(), ReusePort: cfg.ReusePort})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer tr.Close()
	srv, err := server.New(cfg, tr, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	up.blockReloads(srv)
	// Signals are watched before accepting, so a SIGTERM right after start
	// is a graceful stop and never the default kill.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			logMemory(log)
		}
	}()
	var adm *admin.Server
	if cfg.Admin != nil {
		if adm, err = admin.NewOn(cfg.Admin, srv, level, up.adminListener(cfg.Admin.Address)); err != nil {
			fmt.Fprintln(stderr, err)
			srv.Close()
			return 1
		}
		defer adm.Close()
		up.withAdmin(adm)
	}
	xr, err := xf.prepare(cfg, srv, adm, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		srv.Close()
		return 1
	}
	defer xr.cleanup()
	if err := srv.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		srv.Close()
		return 1
	}
	xr.start()
	rl := &reloader{file: *file, override: override, srv: srv, log: log}
	xr.hook(rl, xf)
	stopReload := rl.start(*watch)
	defer stopReload()
	if adm != nil {
		adm.SetReload(rl.reloadText)
		adm.Start()
		log.Info("admin ready", "address", adm.Addr().String())
	}
	if err := up.serve(srv, cfg); err != nil {
		fmt.Fprintln(stderr, err)
		srv.Close()
		return 1
	}
	defer up.close()
	names := make([]string, 0, len(srv.Listeners()))
	for _, l := range srv.Listeners() {
		names = append(names, l.Name+"="+l.Addr().String())
	}
	inForce := pinned
	if inForce == nil {
		inForce, _ = affinity() // inherited (taskset); unknown: "all"
	}
	log.Info("proxylab started", "version", version, "transport", tr.Name(), "engine", "none",
		"cpus", cpuString(inForce), "gomaxprocs", runtime.GOMAXPROCS(0), "listeners", strings.Join(names, ","))

	var sig os.Signal
	select {
	case sig = <-sigs:
	case <-up.handedOver():
		xr.stop() // the new process has the control plane now
		return up.drain(srv, cfg, sigs)
	}
	xr.stop() // no config change while stopping
	if sig == syscall.SIGINT {
		log.Info("SIGINT: stopping now")
		srv.Close()
		return 0
	}
	log.Info("SIGTERM: draining", "timeout", cfg.DrainTimeout.D().String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.D())
	defer cancel()
	go func() {
		// A second signal during the drain means: now.
		<-sigs
		cancel()
	}()
	if err := srv.Drain(ctx); err != nil {
		log.Warn(err.Error())
	}
	log.Info("stopped")
	return 0
}

// logMemory (SIGUSR1) collects garbage, returns freed memory to the OS and
// logs what the process holds, so memory per connection can be measured
// without counting garbage not yet collected.
func logMemory(log *slog.Logger) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := int64(-1)
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, res int64
		if _, err := fmt.Sscan(string(data), &size, &res); err == nil {
			rss = res * int64(os.Getpagesize())
		}
	}
	log.Info("memory", "rss_bytes", rss, "heap_inuse_bytes", ms.HeapInuse, "stack_inuse_bytes", ms.StackInuse,
		"sys_bytes", ms.Sys, "goroutines", runtime.NumGoroutine())
}

// cpuString writes sorted CPU numbers as a list like the kernel's
// Cpus_allowed_list ("0-3,6"); none known is "all".
func cpuString(cpus []int) string {
	if len(cpus) == 0 {
		return "all"
	}
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j == i {
			fmt.Fprint(&b, cpus[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", cpus[i], cpus[j])
		}
		i = j + 1
	}
	return b.String()
}
