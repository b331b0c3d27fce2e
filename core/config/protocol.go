package config

import (
	"fmt"
	"slices"
	"strings"
)

// checkRouteProtocols refuses a route that sends a listener's requests to a
// cluster speaking none of the listener's codecs: an RPC frame written to
// an HTTP server (or a dubbo one to a bolt server) would parse as something
// else upstream. A listener with codec http1 or http2 receives HTTP; one
// named after an RPC codec, that codec; codec auto, HTTP and every RPC
// codec of the binary, so any cluster fits some of its requests statically
// and the proxy refuses the others per request (503 NC). Clusters named by
// cluster_header are known only per request and checked then too.
func (c *Config) checkRouteProtocols(k Known, add func(path, format string, args ...any)) {
	speaks := map[string]string{} // cluster → protocol
	for _, cl := range c.Clusters {
		speaks[cl.Name] = cl.Protocol
	}
	for _, l := range c.Listeners {
		h := l.HTTP
		if h == nil {
			continue
		}
		codecs := listenerCodecs(h.Codec, k)
		for i, vh := range c.Routes {
			if len(h.VirtualHosts) > 0 && !slices.Contains(h.VirtualHosts, vh.Name) {
				continue
			}
			for j, r := range vh.Routes {
				rp := fmt.Sprintf("routes[%d].routes[%d]", i, j)
				check := func(path, cluster string) {
					p, ok := speaks[cluster]
					if !ok || slices.ContainsFunc(codecs, func(codec string) bool { return Serves(p, codec) }) {
						return // unknown clusters are reported elsewhere
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

// listenerCodecs are the request protocols an http_proxy listener receives:
// "http" (HTTP/1.1 and HTTP/2 alike) and RPC codec names.
func listenerCodecs(codec string, k Known) []string {
	switch codec {
	case "http1", "http2":
		return []string{"http"}
	case "auto":
		return append([]string{"http"}, k.RPC...)
	}
	return []string{codec}
}

// Serves reports whether a cluster speaking protocol (http1, http2 or an
// RPC codec's name) can carry a request decoded by codec ("http" for
// HTTP/1.1 and HTTP/2, or an RPC codec's name): HTTP clusters carry HTTP
// requests of either version, an RPC cluster only its own codec's.
func Serves(protocol, codec string) bool {
	if protocol == "http1" || protocol == "http2" {
		return codec == "http"
	}
	return strings.EqualFold(protocol, codec)
}
