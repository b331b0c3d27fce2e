package config

import (
	"fmt"
	"slices"
)

// checkRouteProtocols refuses a route that sends a listener's requests to a
// cluster speaking none of the listener's codecs: an RPC frame written to
// an HTTP server (or a dubbo one to a bolt server) would parse as something
// else upstream. A listener receives what its codec carries (HTTP for
// every HTTP version; an RPC codec's own requests); codec auto, what every
// codec of the binary carries, so any cluster fits some of its requests statically
// and the proxy refuses the others per request (503 NC). Clusters named by
// cluster_header are known only per request and checked then too.
func (c *Config) checkRouteProtocols(k Known, add func(path, format string, args ...any)) {
	speaks := map[string]string{} // cluster → protocol
	for _, cl := range c.Clusters {
		speaks[cl.Name] = cl.Protocol
	}
	carries := func(codec string) string {
		if kc, ok := k.codec(codec); ok {
			return kc.Carries
		}
		return ""
	}
	for _, l := range c.Listeners {
		h := l.HTTP
		if h == nil {
			continue
		}
		codecs := listenerCodecs(h.Codec, k)
		if len(codecs) == 0 {
			continue // an unknown codec is reported elsewhere
		}
		for i, vh := range c.Routes {
			if len(h.VirtualHosts) > 0 && !slices.Contains(h.VirtualHosts, vh.Name) {
				continue
			}
			for j, r := range vh.Routes {
				rp := fmt.Sprintf("routes[%d].routes[%d]", i, j)
				check := func(path, cluster string) {
					p, ok := speaks[cluster]
					if c := carries(p); !ok || c == "" || slices.Contains(codecs, c) {
						return // unknown clusters and protocols are reported elsewhere
					}
					add(path, "cluster %q speaks %s, listener %q codec %s", cluster, p, l.Name, h.Codec)
				}
				if r.Cluster != "" {
					check(rp+".cluster", r.Cluster)
				}
				for n, wc := range r.WeightedClusters {
					check(fmt.Sprintf("%s.weighted_clusters[%d].name", rp, n), wc.Name)
				}
				for n, m := range r.RequestMirrorPolicies {
					check(fmt.Sprintf("%s.request_mirror_policies[%d].cluster", rp, n), m.Cluster)
				}
			}
		}
	}
}

// CodecAuto is the listener codec that detects each connection's codec
// among all the Known ones (ALPN first, then first bytes).
const CodecAuto = "auto"

// listenerCodecs are the request protocols an http_proxy listener receives
// (Codec.Carries of its codecs: every known one for CodecAuto).
func listenerCodecs(codec string, k Known) []string {
	if codec != CodecAuto {
		if kc, ok := k.codec(codec); ok {
			return []string{kc.Carries}
		}
		return nil
	}
	var out []string
	for _, kc := range k.Codecs {
		if !slices.Contains(out, kc.Carries) {
			out = append(out, kc.Carries)
		}
	}
	return out
}
