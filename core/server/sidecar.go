package server

import (
	"net"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/proxy"
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

// originalDstFilter builds a listener's original destination reader; its
// loop check compares with the address info's listener is bound to.
func (s *Server) originalDstFilter(info *ListenerInfo) network.ListenerFilter {
	if s.cfg.Stats.Enabled && info.OriginalDst == nil {
		info.OriginalDst = &network.OriginalDstStats{}
	}
	return &network.OriginalDst{Stats: info.OriginalDst, Own: func() net.Addr {
		if l := info.Listener; l != nil {
			return l.Addr()
		}
		return nil
	}}
}

// originalDstCluster is the original_dst cluster a tcp_proxy listener sends
// to (nil when cluster is another type). Its destination bound is per
// listener; a reload keeps the running one.
func (s *Server) originalDstCluster(cluster string, info *ListenerInfo) *proxy.OriginalDst {
	for _, c := range s.cfg.Clusters {
		if c.Name == cluster && c.Type == config.TypeOriginalDst {
			if od := info.OriginalDstCluster; od != nil && od.Name == cluster && od.MaxHosts == c.MaxHosts {
				return od
			}
			info.OriginalDstCluster = proxy.NewOriginalDst(cluster, c.MaxHosts)
			return info.OriginalDstCluster
		}
	}
	return nil
}

// transparent sets IP_TRANSPARENT on a transparent listener's socket.
func transparent(lc config.Listener, l *network.Listener) error {
	if !lc.Transparent {
		return nil
	}
	return l.SetTransparent()
}
