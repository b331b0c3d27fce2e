package server

import (
	"regexp"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/upstream"
)

// routerFor builds the router of an http_proxy listener: the top-level
// virtual hosts it selects (all when it names none).
func (s *Server) routerFor(h *config.HTTPProxy) *router.Router {
	var vhosts []router.VirtualHost
	_, fidx := httpFilters(h)
	for _, vh := range s.cfg.Routes {
		if len(h.VirtualHosts) > 0 && !contains(h.VirtualHosts, vh.Name) {
			continue
		}
		rv := router.VirtualHost{Name: vh.Name, Domains: vh.Domains, HeaderOps: headerOps(vh.HeaderOps), Filters: filterOverrides(vh.PerFilter, fidx)}
		for _, r := range vh.Routes {
			rr := router.Route{Prefix: r.Prefix, Path: r.Path, Methods: r.Methods, Cluster: r.Cluster, Timeout: r.Timeout.D(),
				PrefixRewrite: r.PrefixRewrite, ClusterHeader: r.ClusterHeader, HostRewrite: r.HostRewrite, HeaderOps: headerOps(r.HeaderOps),
				Tunnel: routeTunnel(r.RouteTunnel), Name: r.Name, Filters: filterOverrides(r.PerFilter, fidx)}
			if r.IdleTimeout != nil {
				rr.IdleTimeout, rr.IdleSet = r.IdleTimeout.D(), true
			}
			for _, m := range r.RequestMirrorPolicies {
				rr.Mirrors = append(rr.Mirrors, router.Mirror{Cluster: m.Cluster, Percent: m.Percent})
			}
			if len(r.MetadataMatch) > 0 {
				rr.Subset = upstream.SubsetKey(r.MetadataMatch)
			}
			for _, wc := range r.WeightedClusters {
				rr.WeightedClusters = append(rr.WeightedClusters, router.WeightedCluster{Name: wc.Name, Weight: wc.Weight})
			}
			if d := r.DirectResponse; d != nil {
				rr.Direct = &router.DirectResponse{Status: d.Status, Body: []byte(d.Body)}
			}
			if rd := r.Redirect; rd != nil {
				rr.Redirect = &router.Redirect{Scheme: rd.SchemeRedirect, Host: rd.HostRedirect, Path: rd.PathRedirect,
					PrefixRewrite: rd.PrefixRewrite, Code: rd.ResponseCode, StripQuery: rd.StripQuery}
			}
			if rw := r.RegexRewrite; rw != nil {
				rr.RegexRewrite = &router.RegexRewrite{Pattern: regexp.MustCompile(rw.Pattern), Substitution: envoySubstitution(rw.Substitution)}
			}
			if rp := r.RetryPolicy; rp != nil {
				rr.NumRetries, rr.RetriableStatusCodes = rp.NumRetries, rp.RetriableStatusCodes
				rr.PerTryTimeout, rr.BackoffBase, rr.BackoffMax = rp.PerTryTimeout.D(), rp.BaseInterval.D(), rp.MaxInterval.D()
				for _, on := range rp.RetryOn {
					rr.RetryOn |= map[string]router.RetryOn{"connect-failure": router.RetryConnectFailure, "reset": router.RetryReset,
						"5xx": router.Retry5xx, "gateway-error": router.RetryGatewayError, "retriable-status-codes": router.RetryRetriableStatusCodes}[on]
				}
			}
			if r.Regex != "" {
				rr.Regex = regexp.MustCompile(r.Regex) // validated at load
			}
			for _, m := range r.Headers {
				rr.Headers = append(rr.Headers, router.HeaderMatcher{Name: m.Name, Value: valueMatcher(m), Present: m.Present, Invert: m.Invert})
			}
			for _, m := range r.QueryParameters {
				rr.Query = append(rr.Query, router.QueryMatcher{Name: m.Name, Value: valueMatcher(m), Present: m.Present})
			}
			for _, hp := range r.HashPolicy {
				rr.HashPolicy = append(rr.HashPolicy, router.HashPolicy{Header: hp.Header, Cookie: hp.Cookie, SourceIP: hp.SourceIP})
			}
			rv.Routes = append(rv.Routes, rr)
		}
		vhosts = append(vhosts, rv)
	}
	return router.New(vhosts)
}
