// Package tls13only is an example crypto engine: gotls (crypto/tls) with
// TLS 1.3 as the floor on both sides, whatever a listener or cluster asks
// for. It shows the shape of an engine package — a Name, a Factory and the
// offload.Engine interface — by delegating the work to an existing engine
// and adjusting its config.
//
// Registered with one line in cmd/proxylab/builtins.go, then chosen with
// `tls: {engine: tls13only, ...}` on a listener or cluster:
//
//	offload.Register(tls13only.Name, tls13only.New)
package tls13only

import (
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/gotls"
)

// Name is the engine's name in a tls block's `engine`.
const Name = "tls13only"

// Engine wraps gotls.
type Engine struct{ inner offload.Engine }

// New is the offload.Factory.
func New() (offload.Engine, error) {
	inner, err := gotls.New()
	if err != nil {
		return nil, err
	}
	return Engine{inner: inner}, nil
}

func (e Engine) Name() string { return Name }

// NewServer secures a listener with TLS 1.3 only.
func (e Engine) NewServer(cfg *offload.ServerConfig) (offload.Server, error) {
	c := *cfg
	c.MinVersion = "1.3"
	return e.inner.NewServer(&c)
}

// NewClient secures a cluster's connections with TLS 1.3 only.
func (e Engine) NewClient(cfg *offload.ClientConfig) (offload.Client, error) {
	c := *cfg
	c.MinVersion = "1.3"
	return e.inner.NewClient(&c)
}
