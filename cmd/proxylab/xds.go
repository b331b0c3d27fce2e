package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/xds"
)

// xdsFlags are run's control-plane flags.
type xdsFlags struct {
	addr, nodeID, nodeCluster *string
	delta                     *bool
	debounce                  *time.Duration
}

func addXDSFlags(fs *flag.FlagSet) *xdsFlags {
	return &xdsFlags{
		addr:        fs.String("xds", "", "ADS control plane address (host:port, gRPC plaintext); the file's listeners and clusters stay, the control plane's are added"),
		delta:       fs.Bool("xds-delta", false, "use incremental (delta) ADS instead of state of the world"),
		nodeID:      fs.String("node-id", "", "xDS node id (default: the host name)"),
		nodeCluster: fs.String("node-cluster", "proxylab", "xDS node cluster"),
		debounce:    fs.Duration("xds-debounce", 50*time.Millisecond, "least time between two applied xDS updates (updates meanwhile are coalesced)"),
	}
}

func (x *xdsFlags) enabled() bool { return *x.addr != "" }

// load reads the config; under a control plane it may have no listener
// and clusters without hosts.
func (x *xdsFlags) load(file string, k config.Known) (*config.Config, error) {
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
		return nil, nil
	}
	ap, ok := srv.(xds.Applier)
	if !ok {
		return nil, fmt.Errorf("proxylab: --xds: this build cannot apply configs live")
	}
	dir, err := os.MkdirTemp("", "proxylab-xds-*")
	if err != nil {
		return nil, fmt.Errorf("proxylab: --xds: %w", err)
	}
	id := *x.nodeID
	if id == "" {
		id, _ = os.Hostname()
	}
	node := &corev3.Node{Id: id, Cluster: *x.nodeCluster, UserAgentName: "proxylab",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: version}}
	c := xds.New(xds.Options{Address: *x.addr, Delta: *x.delta, Node: node, Base: cfg, Known: known(), Apply: ap,
		Files: xds.DirStore{Dir: dir}, Log: log, Debounce: *x.debounce})
	if adm != nil {
		adm.AddCollector(c.Stats())
		adm.AddDump("xds", func() any { return c.Dump() })
	}
	return &xdsRun{client: c, dir: dir, done: make(chan struct{})}, nil
}

// start runs the client until stop.
func (r *xdsRun) start() {
	if r == nil {
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
	if r == nil {
		return
	}
	rl.load, rl.rebase = x.load, r.client.Rebase
}
