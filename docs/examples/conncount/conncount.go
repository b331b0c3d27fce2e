// Package conncount is an example transport: netpoll, with every connection
// it accepts or dials counted by the wrapper itself and reported through
// transport.StatsReporter, so the admin API's
// proxylab_transport_accepts_total{transport="conncount"} and
// proxylab_transport_dials_total show them. It shows the shape of a
// transport package — a Name, a Factory, the Transport and Listener
// interfaces — without an event loop of its own.
//
// It owns an options block, the config's top-level `conncount:` (decoded
// by registry.Decode into Options: unknown fields refused, errors with
// their paths):
//
//	transport: conncount
//	conncount: {count_dials: false}
//
// Registered with one line in cmd/proxylab/builtins.go, then chosen with
// `--transport conncount` or `transport: conncount`:
//
//	transport.RegisterModule(conncount.Module)
package conncount

import (
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// Name is the transport's name for --transport and the config.
const Name = "conncount"

// Module is what the binary registers: the name, the factory and the
// decoder of the `conncount:` block.
var Module = transport.Module{Name: Name, New: New, Options: DecodeOptions}

// Options are the `conncount:` block.
type Options struct {
	// CountDials counts the connections the transport dials too, not only
	// those it accepts (default true).
	CountDials bool `yaml:"count_dials"`
}

// SetDefaults is called by registry.Decode before the block is decoded.
func (o *Options) SetDefaults() { o.CountDials = true }

// DecodeOptions decodes the block (node nil: the defaults); errors are
// registry.FieldErrors under path (e.g. conncount.count_dials).
func DecodeOptions(node *yaml.Node, path string, _ bool) (any, []error) {
	o, errs := registry.Decode[Options](node, path)
	if errs != nil {
		return nil, errs
	}
	return o, nil
}

// Transport counts connections over an inner netpoll transport. The
// connections themselves are netpoll's, unwrapped, so their optional
// capabilities (transport.SyscallConner) stay visible.
type Transport struct {
	inner    transport.Transport
	opts     Options
	accepted atomic.Uint64
	dialled  atomic.Uint64 // dials that connected
	failed   atomic.Uint64 // dials that did not
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.StatsReporter = (*Transport)(nil)
)

// New is the transport.Factory; opts.Config is the decoded block (nil when
// the transport is built without a config: the defaults).
func New(opts transport.Options) (transport.Transport, error) {
	o := Options{CountDials: true}
	if c, ok := opts.Config.(*Options); ok {
		o = *c
	}
	inner, err := netpoll.New(opts)
	if err != nil {
		return nil, err
	}
	return &Transport{inner: inner, opts: o}, nil
}

func (t *Transport) Name() string { return Name }
func (t *Transport) Close() error { return t.inner.Close() }

// Listen binds address through netpoll and counts what it accepts.
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	l, err := t.inner.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: l, t: t}, nil
}

// Dial connects through netpoll and counts the outcome before done runs.
func (t *Transport) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	if !t.opts.CountDials {
		t.inner.Dial(network, address, timeout, done)
		return
	}
	t.inner.Dial(network, address, timeout, func(c transport.Conn, err error) {
		if err != nil {
			t.failed.Add(1)
		} else {
			t.dialled.Add(1)
		}
		done(c, err)
	})
}

// Stats reports the wrapper's counts and netpoll's I/O counters.
func (t *Transport) Stats() transport.Stats {
	var s transport.Stats
	if r, ok := t.inner.(transport.StatsReporter); ok {
		s = r.Stats()
	}
	s.Accepts, s.Dials, s.DialFailures = t.accepted.Load(), t.dialled.Load()+t.failed.Load(), t.failed.Load()
	return s
}

type listener struct {
	transport.Listener
	t *Transport
}

func (l *listener) Start(accept func(transport.Conn)) {
	l.Listener.Start(func(c transport.Conn) {
		l.t.accepted.Add(1)
		accept(c)
	})
}
