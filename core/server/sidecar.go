package server

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
)

// proxyProtocolFilter builds a listener's PROXY header reader, keeping the
// stats a reload found in info.
func (s *Server) proxyProtocolFilter(pp *config.ListenerProxyProtocol, info *ListenerInfo) network.ListenerFilter {
	if s.cfg.Stats.Enabled && info.ProxyProtocol == nil {
		info.ProxyProtocol = &network.ProxyProtocolStats{}
	}
	return &network.ProxyProtocol{Version: pp.Version, Trusted: pp.Prefixes(), Timeout: pp.Timeout.D(), Stats: info.ProxyProtocol}
}

// sendsProxyProtocol is the PROXY version tcp_proxy writes to cluster (0:
// none).
func (s *Server) sendsProxyProtocol(cluster string) int {
	for _, c := range s.cfg.Clusters {
		if c.Name == cluster && c.ProxyProtocol != nil {
			return c.ProxyProtocol.Version
		}
	}
	return 0
}
