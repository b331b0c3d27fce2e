package server

import (
	"fmt"
	"slices"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/stats"
)

// The codecs come from the stream-level registry (stream.Register in the
// binary's built-ins); nothing here knows which codec speaks. A codec's
// metrics reach the admin exporter through stats.Collector.

// clusterCodec builds the client side of the cluster's codec.
func (s *Server) clusterCodec(cc config.Cluster) (stream.Codec, stream.Client, error) {
	codec, ok := stream.Lookup(cc.Protocol)
	if !ok {
		return nil, nil, fmt.Errorf("server: cluster %q: unknown protocol %q", cc.Name, cc.Protocol)
	}
	cli := codec.NewClient(&stream.ClientOptions{
		ConnectTimeout: cc.ConnectTimeout.D(), IdleTimeout: cc.IdleTimeout.D(),
		MaxConnections: cc.MaxConnections, MaxPending: cc.MaxPending, MaxRequestsPerConn: cc.MaxRequestsPerConnection,
		HighWatermark: 256 << 10, Timers: s.timers, Blocks: cc.Options,
	})
	if st, ok := cli.Stats().(stats.Collector); ok {
		s.codecStats[cc.Name] = st
	}
	return codec, cli, nil
}

// listenerCodecs builds the server side of every registered codec for an
// http_proxy listener (so each codec's metrics exist whatever the
// listener's codec) and picks the ones it speaks: all of them, detected,
// for codec auto; else the one named.
func listenerCodecs(h *config.HTTPProxy, o *stream.ServerOptions, info *ListenerInfo) (cs []stream.Codec, srvs []stream.Server, detect bool, err error) {
	all := stream.Codecs()
	for _, c := range all {
		srv := c.NewServer(o)
		if st, ok := srv.Stats().(stats.Collector); ok {
			info.Codecs = append(info.Codecs, st)
		}
		if h.Codec == config.CodecAuto || h.Codec == c.Name() {
			cs, srvs = append(cs, c), append(srvs, srv)
		}
	}
	if len(cs) == 0 {
		return nil, nil, false, fmt.Errorf("server: unknown codec %q", h.Codec)
	}
	return cs, srvs, h.Codec == config.CodecAuto, nil
}

// listenerALPN is what a TLS listener offers when its config sets
// nothing: its codec's ALPN ids, or (codec auto, or a codec without any)
// every registered codec's, in registration order.
func listenerALPN(codec string) []string {
	if c, ok := stream.Lookup(codec); ok && len(c.ALPN()) > 0 {
		return c.ALPN()
	}
	var out []string
	for _, c := range stream.Codecs() {
		for _, id := range c.ALPN() {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// KnownCodecs describes the registered codecs to config validation.
func KnownCodecs() []config.Codec {
	var out []config.Codec
	for _, c := range stream.Codecs() {
		kc := config.Codec{Name: c.Name(), Carries: c.Carries()}
		if ob, ok := c.(stream.OptionBlocks); ok {
			for _, b := range ob.OptionBlocks() {
				kc.Options = append(kc.Options, config.CodecOption{Key: b.Key, Listener: b.Listener, Decode: b.Decode})
			}
		}
		out = append(out, kc)
	}
	return out
}
