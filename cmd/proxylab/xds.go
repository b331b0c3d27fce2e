package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"google.golang.org/protobuf/proto"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/xds"
)

// xdsFlags are run's control-plane flags, and what an Envoy bootstrap
// given as the config file says (flags win).
type xdsFlags struct {
	addr, nodeID, nodeCluster *string
	delta                     *bool
	debounce                  *time.Duration
	boot                      *xds.Bootstrap // when -c is a bootstrap
	dir                       string         // the client's files, made once
}

func addXDSFlags(fs *flag.FlagSet) *xdsFlags {
	return &xdsFlags{
		addr:        fs.String("xds", "", "ADS control plane address (host:port, gRPC plaintext); the file's listeners and clusters stay, the control plane's are added"),
		delta:       fs.Bool("xds-delta", false, "use incremental (delta) ADS instead of state of the world"),
		nodeID:      fs.String("node-id", "", "xDS node id (default: the host name)"),
		nodeCluster: fs.String("node-cluster", "", "xDS node cluster (default: the bootstrap's, or proxylab)"),
		debounce:    fs.Duration("xds-debounce", 50*time.Millisecond, "least time between two applied xDS updates (updates meanwhile are coalesced)"),
	}
}

func (x *xdsFlags) enabled() bool { return *x.addr != "" || (x.boot != nil && x.boot.ADS != "") }

// files is the directory for inline certificates and SDS secrets.
func (x *xdsFlags) files() (string, error) {
	if x.dir == "" {
		dir, err := os.MkdirTemp("", "proxylab-xds-*")
		if err != nil {
			return "", fmt.Errorf("proxylab: xds: %w", err)
		}
		x.dir = dir
	}
	return x.dir, nil
}

// load reads the config: an Envoy v3 bootstrap (static resources
// translated, ADS from dynamic_resources) or proxylab's YAML, which under
// a control plane may have no listener and clusters without hosts.
func (x *xdsFlags) load(file string, k config.Known) (*config.Config, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if xds.IsBootstrap(data) {
			dir, err := x.files()
			if err != nil {
				return nil, err
			}
			b, err := xds.LoadBootstrap(data, k, xds.DirStore{Dir: dir})
			if err != nil {
				return nil, err
			}
			for _, w := range b.Warnings {
				slog.Warn("bootstrap: field not honoured (cosmetic)", "field", w.Field)
			}
			x.boot = b
			return b.Config, nil
		}
	}
	if !x.enabled() {
		return config.Load(file, k)
	}
	return config.LoadWith(file, k, config.BuildOptions{Dynamic: true})
}

// xdsRun is a prepared client; start runs it once the server accepts.
type xdsRun struct {
	client *xds.Client
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// prepare builds the client and registers its metrics and dump with the
// admin API (adm may be nil). nil when --xds is not set.
func (x *xdsFlags) prepare(cfg *config.Config, srv any, adm *admin.Server, log *slog.Logger) (*xdsRun, error) {
	if !x.enabled() {
		if x.dir != "" { // a bootstrap without ADS: its files go at exit
			return &xdsRun{dir: x.dir}, nil
		}
		return nil, nil
	}
	ap, ok := srv.(xds.Applier)
	if !ok {
		return nil, fmt.Errorf("proxylab: --xds: this build cannot apply configs live")
	}
	dir, err := x.files()
	if err != nil {
		return nil, err
	}
	node := &corev3.Node{Cluster: "proxylab"}
	addr, delta := *x.addr, *x.delta
	if b := x.boot; b != nil {
		if b.Node != nil {
			node = proto.Clone(b.Node).(*corev3.Node)
		}
		if addr == "" {
			addr, delta = b.ADS, b.Delta || delta
		}
	}
	if *x.nodeID != "" || node.Id == "" {
		node.Id = *x.nodeID
		if node.Id == "" {
			node.Id, _ = os.Hostname()
		}
	}
	if *x.nodeCluster != "" {
		node.Cluster = *x.nodeCluster
	}
	node.UserAgentName = "proxylab"
	node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: version}
	c := xds.New(xds.Options{Address: addr, Delta: delta, Node: node, Base: cfg, Known: known(), Apply: ap,
		Files: xds.DirStore{Dir: dir}, Log: log, Debounce: *x.debounce})
	if adm != nil {
		adm.AddCollector(c.Stats())
		adm.AddDump("xds", func() any { return c.Dump() })
	}
	return &xdsRun{client: c, dir: dir, done: make(chan struct{})}, nil
}

// start runs the client until stop.
func (r *xdsRun) start() {
	if r == nil || r.client == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.client.Run(ctx)
	}()
}

// stop ends the client (no Apply after it returns); idempotent.
func (r *xdsRun) stop() {
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
}

// cleanup stops the client and removes its files, once the server has
// stopped reading them.
func (r *xdsRun) cleanup() {
	if r == nil {
		return
	}
	r.stop()
	os.RemoveAll(r.dir)
}

// hook makes file reloads keep the control plane's resources: the file is
// loaded as a base and the client applies base plus resources.
func (r *xdsRun) hook(rl *reloader, x *xdsFlags) {
	if r == nil || r.client == nil {
		rl.load = x.load // a bootstrap file reloads as one
		return
	}
	rl.load, rl.rebase = x.load, r.client.Rebase
}

// validateFile is validate's loader: proxylab YAML or an Envoy bootstrap
// (whose inline certificates go to a directory removed at once).
func validateFile(file string) (*config.Config, error) {
	x := &xdsFlags{addr: new(string)}
	defer func() {
		if x.dir != "" {
			os.RemoveAll(x.dir)
		}
	}()
	return x.load(file, known())
}
