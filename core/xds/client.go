// Package xds is proxylab's xDS client: it subscribes to a control plane
// over ADS (state-of-the-world or delta), translates Envoy v3 Listener,
// RouteConfiguration, Cluster, ClusterLoadAssignment and Secret resources
// into the model the YAML file builds (core/config), validates the whole
// result with the file's validation and hands it to the server's Apply.
// A resource proxylab cannot honour is NACKed naming the field; a
// cosmetic one is accepted, counted and logged.
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/proxylab/proxylab/core/config"
)

// Applier applies a validated config atomically (core/server.Server).
type Applier interface {
	Apply(cfg *config.Config) error
}

// Options configure a Client.
type Options struct {
	// Address of the control plane's gRPC server (host:port, plaintext).
	Address string
	// Delta selects incremental ADS; otherwise state of the world.
	Delta bool
	Node  *corev3.Node
	// Base is the static config the dynamic resources are added to.
	Base  *config.Config
	Known config.Known
	Apply Applier
	// Files stores inline certificates and SDS secrets.
	Files FileStore
	Log   *slog.Logger
	// Debounce is the least time between two Applies: updates arriving
	// meanwhile are coalesced into one (the latest of each resource
	// always wins). 0 means 50ms.
	Debounce time.Duration
	// BackoffBase and BackoffMax bound the reconnect delay (exponential
	// with full jitter); 0 means 250ms and 30s.
	BackoffBase, BackoffMax time.Duration
}

// Client is a running xDS subscription. Run owns the stream and the model;
// Stats and Dump may be called from any goroutine.
type Client struct {
	opt   Options
	stats *Stats

	// mu guards what follows: the update loop changes it, and Rebase (a
	// file reload) from another goroutine.
	mu    sync.Mutex
	model *model
	raw   map[string]map[string]*rawResource // by type, then name
	types map[string]*typeState
	// applied is the last config given to Apply.
	applied *config.Config

	dumpMu sync.Mutex
	dump   map[string]map[string]*rawResource // copy for Dump
	static map[string][]string                // the base's listener and cluster names
}

// rawResource is a resource as received, for /config_dump and delta's
// initial versions.
type rawResource struct {
	any      *anypb.Any
	version  string
	accepted time.Time
}

// typeState is what the client knows of one type on this stream.
type typeState struct {
	version string // last accepted
	nonce   string // last received
	names   []string
	sent    bool // a request for the type is on the current stream
	// rejected is the version NACKed last: the same version again is
	// NACKed after a pause, so a control plane that resends it at once
	// (go-control-plane does) does not spin.
	rejected string
}

// subscription order: secrets and clusters (with their endpoints) before
// the listeners that use them, listeners before their routes — Envoy's.
var order = []string{SecretType, ClusterType, EndpointType, ListenerType, RouteType}

// New prepares a client; Run starts it.
func New(opt Options) *Client {
	if opt.Debounce == 0 {
		opt.Debounce = 50 * time.Millisecond
	}
	if opt.BackoffBase == 0 {
		opt.BackoffBase = 250 * time.Millisecond
	}
	if opt.BackoffMax == 0 {
		opt.BackoffMax = 30 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	c := &Client{opt: opt, stats: newStats(), model: newModel(), raw: map[string]map[string]*rawResource{},
		types: map[string]*typeState{}, dump: map[string]map[string]*rawResource{}}
	for _, t := range order {
		c.raw[t] = map[string]*rawResource{}
		c.types[t] = &typeState{}
	}
	return c
}

// Run connects and reconnects until ctx ends, keeping the last good config
// while the control plane is away.
func (c *Client) Run(ctx context.Context) error {
	cc, err := grpc.NewClient(c.opt.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("xds: %w", err)
	}
	defer cc.Close()
	delay := c.opt.BackoffBase
	for {
		start := time.Now()
		err := c.session(ctx, cc)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > c.opt.BackoffMax {
			delay = c.opt.BackoffBase // a stream that lasted resets the backoff
		}
		wait := time.Duration(rand.Int64N(int64(delay)) + 1) // full jitter
		c.stats.reconnects.Add(1)
		c.opt.Log.Warn("xds: stream ended, reconnecting", "address", c.opt.Address, "error", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		delay = min(2*delay, c.opt.BackoffMax)
	}
}

// session runs one stream: a receiver goroutine feeds updates to the loop.
func (c *Client) session(parent context.Context, cc *grpc.ClientConn) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var s adsStream
	var err error
	if c.opt.Delta {
		s, err = newDelta(ctx, cc, c.opt.Node)
	} else {
		s, err = newSotW(ctx, cc, c.opt.Node)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	for _, t := range order {
		c.types[t].sent = false
	}
	err = c.subscribe(s, true)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	updates := make(chan *update, 64)
	recvErr := make(chan error, 1)
	go func() { // ends when the stream does (ctx cancel closes it)
		for {
			u, err := s.recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case updates <- u:
			case <-ctx.Done():
				return
			}
		}
	}()
	var last time.Time
	for {
		var batch []*update
		select {
		case err := <-recvErr:
			return err
		case u := <-updates:
			batch = append(batch, u)
		}
		// Coalesce: wait out the debounce since the last Apply, taking
		// whatever else arrives meanwhile.
		wait := time.NewTimer(max(0, c.opt.Debounce-time.Since(last)))
	collect:
		for {
			select {
			case u := <-updates:
				batch = append(batch, u)
			case <-wait.C:
				break collect
			case err := <-recvErr:
				wait.Stop()
				return err
			}
		}
		for more := true; more; {
			select {
			case u := <-updates:
				batch = append(batch, u)
			default:
				more = false
			}
		}
		if err := c.process(ctx, s, batch); err != nil {
			return err
		}
		last = time.Now()
	}
}

// subscribe sends a request for each type whose names changed (or, on a
// new stream, every type already in use, and clusters first of all).
func (c *Client) subscribe(s adsStream, fresh bool) error {
	want := c.wantNames()
	for _, t := range order {
		st := c.types[t]
		names, ok := want[t]
		if !ok {
			continue
		}
		if st.sent && slices.Equal(names, st.names) {
			continue
		}
		if t != ClusterType && t != ListenerType && len(names) == 0 {
			continue // an empty SotW list would mean every resource
		}
		st.names, st.sent = names, true
		r := reply{typeURL: t, version: st.version, nonce: st.nonce, names: names}
		if fresh {
			r.nonce = "" // nonces do not survive a stream
			r.have = map[string]string{}
			for n, rr := range c.raw[t] {
				r.have[n] = rr.version
			}
		}
		if err := s.send(r); err != nil {
			return err
		}
	}
	return nil
}

// wantNames are the names each type needs now (nil: wildcard); a type
// not in the map is not subscribed yet. Clusters come first; listeners
// once clusters have answered.
func (c *Client) wantNames() map[string][]string {
	want := map[string][]string{ClusterType: nil}
	if c.types[ClusterType].version == "" {
		return want
	}
	eds, sds := map[string]bool{}, map[string]bool{}
	for _, cl := range c.model.clusters {
		if cl.eds != "" {
			eds[cl.eds] = true
		}
		if cl.tls != nil {
			for _, n := range []string{cl.tls.certSDS, cl.tls.caSDS} {
				if n != "" {
					sds[n] = true
				}
			}
		}
	}
	want[EndpointType] = slices.Sorted(maps.Keys(eds))
	want[ListenerType] = nil
	rds := map[string]bool{}
	for _, l := range c.model.listeners {
		if l.rds != "" {
			rds[l.rds] = true
		}
		if l.tls != nil {
			for _, n := range append(slices.Clone(l.tls.certSDS), l.tls.caSDS) {
				if n != "" {
					sds[n] = true
				}
			}
		}
	}
	if c.types[ListenerType].version != "" {
		want[RouteType] = slices.Sorted(maps.Keys(rds))
	}
	want[SecretType] = slices.Sorted(maps.Keys(sds))
	return want
}

// Rebase replaces the static base (a reloaded file) and applies it with
// the dynamic resources through apply; on error nothing changes.
func (c *Client) Rebase(base *config.Config, apply func(*config.Config) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.model.assemble(base)
	if len(a.errs) > 0 {
		return fmt.Errorf("xds: the new base with the control plane's resources: %s", strings.Join(a.errs, "; "))
	}
	if err := config.Build(a.cfg, c.opt.Known, config.BuildOptions{Dynamic: true}); err != nil {
		return fmt.Errorf("xds: the new base with the control plane's resources: %s", a.explain(err))
	}
	if err := apply(a.cfg); err != nil {
		return err
	}
	c.opt.Base, c.applied = base, a.cfg
	c.model.activeClusters, c.model.activeListeners = a.active, a.actL
	c.publish()
	return nil
}

// process handles a batch: per type (in warming order) the latest state
// is translated and the whole config validated; the accepted types are
// applied at once, then every type is ACKed or NACKed.
func (c *Client) process(ctx context.Context, s adsStream, batch []*update) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	merged := map[string]*update{}
	for _, u := range batch {
		merged[u.typeURL] = mergeUpdate(merged[u.typeURL], u)
	}
	cand := c.model.clone()
	raw := map[string]map[string]*rawResource{}
	nacks := map[string]string{}
	var accepted []string
	for _, t := range order {
		u := merged[t]
		if u == nil {
			continue
		}
		c.stats.of(t).attempts.Add(1)
		next, msg := c.applyUpdate(cand, u)
		if msg == "" {
			a := cand.assemble(c.opt.Base)
			if len(a.errs) > 0 {
				msg = strings.Join(a.errs, "; ")
			} else if err := config.Build(a.cfg, c.opt.Known, config.BuildOptions{Dynamic: true}); err != nil {
				msg = a.explain(err)
			}
		}
		if msg != "" {
			nacks[t] = msg
			cand = c.model.clone() // drop this type's change, keep the others
			for _, at := range accepted {
				c.applyUpdate(cand, merged[at])
			}
			continue
		}
		raw[t] = next
		accepted = append(accepted, t)
	}
	if len(accepted) > 0 {
		// Build the final candidate again: the config objects Build
		// finished above belong to intermediate candidates.
		asm := cand.assemble(c.opt.Base)
		if len(asm.errs) > 0 {
			return fmt.Errorf("xds: internal: accepted state no longer assembles: %s", strings.Join(asm.errs, "; "))
		}
		if err := config.Build(asm.cfg, c.opt.Known, config.BuildOptions{Dynamic: true}); err != nil {
			return fmt.Errorf("xds: internal: accepted state no longer validates: %w", err)
		}
		var err error
		if !reflect.DeepEqual(asm.cfg, c.applied) {
			// (A new version of the same resources changes nothing the
			// server would see: no Apply.)
			err = c.opt.Apply.Apply(asm.cfg)
		}
		if err != nil {
			for _, t := range accepted {
				nacks[t] = "apply: " + err.Error()
			}
			accepted = nil
		} else {
			cand.activeClusters, cand.activeListeners = asm.active, asm.actL
			c.model, c.applied = cand, asm.cfg
			if len(asm.warming) > 0 {
				c.opt.Log.Info("xds: warming", "resources", strings.Join(asm.warming, ", "))
			}
		}
	}
	now := time.Now()
	for _, t := range accepted {
		u := merged[t]
		c.raw[t] = raw[t]
		st := c.types[t]
		st.version, st.nonce, st.rejected = u.version, u.nonce, ""
		c.stats.of(t).accept(u.version, now)
		c.opt.Log.Info("xds: update accepted", "type", shortType(t), "version", u.version, "resources", len(raw[t]))
		if err := s.send(reply{typeURL: t, version: st.version, nonce: st.nonce, names: st.names}); err != nil {
			return err
		}
	}
	for _, t := range order {
		msg, ok := nacks[t]
		if !ok {
			continue
		}
		u, st := merged[t], c.types[t]
		st.nonce = u.nonce
		c.stats.of(t).rejections.Add(1)
		c.opt.Log.Warn("xds: update rejected", "type", shortType(t), "version", u.version, "error", msg)
		if st.rejected == u.version {
			select { // the same bad version again: do not spin
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
		st.rejected = u.version
		if err := s.send(reply{typeURL: t, version: st.version, nonce: st.nonce, names: st.names, nack: msg}); err != nil {
			return err
		}
	}
	c.prune()
	c.publish()
	return c.subscribe(s, false)
}

// prune forgets endpoints, routes and secrets nothing refers to any more
// (delta never removes what the client stopped asking for).
func (c *Client) prune() {
	want := c.wantNames()
	for _, t := range []string{EndpointType, RouteType, SecretType} {
		names, ok := want[t]
		if !ok {
			continue
		}
		for n := range c.raw[t] {
			if !slices.Contains(names, n) {
				delete(c.raw[t], n)
				c.model.remove(t, n)
			}
		}
	}
}

// mergeUpdate folds b (later) into a: full sets replace, deltas add up.
func mergeUpdate(a, b *update) *update {
	if a == nil || b.full {
		return b
	}
	out := *b
	out.resources, out.versions = maps.Clone(a.resources), maps.Clone(a.versions)
	if out.versions == nil {
		out.versions = map[string]string{}
	}
	for _, n := range a.removed {
		if _, back := b.resources[n]; !back {
			out.removed = append(out.removed, n)
		}
	}
	for _, n := range b.removed {
		delete(out.resources, n)
	}
	for n, r := range b.resources {
		out.resources[n] = r
		out.versions[n] = b.versions[n]
	}
	return &out
}

// applyUpdate puts u into m; it returns the type's new raw set, or the
// NACK text.
func (c *Client) applyUpdate(m *model, u *update) (map[string]*rawResource, string) {
	next := maps.Clone(c.raw[u.typeURL])
	if u.full {
		next = map[string]*rawResource{}
	}
	for _, n := range u.removed {
		delete(next, n)
	}
	if u.typeURL == EndpointType || u.typeURL == RouteType || u.typeURL == SecretType {
		if names := c.types[u.typeURL].names; names != nil && !u.full && len(u.versions) == 0 {
			// SotW: only what is still subscribed is kept.
			for n := range next {
				if !slices.Contains(names, n) {
					delete(next, n)
				}
			}
		}
	}
	var errs []string
	now := time.Now()
	for _, n := range slices.Sorted(maps.Keys(u.resources)) {
		a := u.resources[n]
		v := u.version
		if rv, ok := u.versions[n]; ok {
			v = rv
		}
		if prev := c.raw[u.typeURL][n]; prev != nil && proto.Equal(prev.any, a) {
			next[n] = &rawResource{any: a, version: v, accepted: prev.accepted}
			continue // unchanged: its translation stands (and warned once)
		}
		msg, err := unpack(a)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: %v", shortType(u.typeURL), n, err))
			continue
		}
		if u.typeURL == EndpointType && !announced(m, n) {
			if slices.Contains(c.types[EndpointType].names, n) {
				delete(next, n) // asked for before its cluster went: stale, not wrong
				continue
			}
			errs = append(errs, fmt.Sprintf("ClusterLoadAssignment %q: cluster_name: endpoints for a cluster never announced (no EDS cluster names it)", n))
			continue
		}
		t := m.put(u.typeURL, n, msg, c.opt.Files)
		for _, w := range t.warns {
			c.stats.warn(w)
			c.opt.Log.Warn("xds: field not honoured (cosmetic)", "type", shortType(w.Type), "resource", w.Resource, "field", w.Field)
		}
		for _, e := range t.errs {
			errs = append(errs, strings.TrimPrefix(e.Error(), "xds: "))
		}
		next[n] = &rawResource{any: a, version: v, accepted: now}
	}
	// Drop from the model what the new set no longer has.
	for n := range c.raw[u.typeURL] {
		if _, ok := next[n]; !ok {
			m.remove(u.typeURL, n)
		}
	}
	if len(errs) > 0 {
		return nil, strings.Join(errs, "; ")
	}
	return next, ""
}

// announced says whether an EDS cluster of m takes its endpoints from
// name.
func announced(m *model, name string) bool {
	for _, cl := range m.clusters {
		if cl.eds == name {
			return true
		}
	}
	return false
}

// publish copies the accepted resources (and the static names) for Dump.
// Called with mu held.
func (c *Client) publish() {
	c.dumpMu.Lock()
	defer c.dumpMu.Unlock()
	c.static = map[string][]string{}
	for _, l := range c.opt.Base.Listeners {
		c.static["listeners"] = append(c.static["listeners"], l.Name)
	}
	for _, cl := range c.opt.Base.Clusters {
		c.static["clusters"] = append(c.static["clusters"], cl.Name)
	}
	for t, rs := range c.raw {
		c.dump[t] = maps.Clone(rs)
	}
}
