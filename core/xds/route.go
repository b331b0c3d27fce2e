package xds

import (
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/proxylab/proxylab/core/config"
)

// routeConfig is a translated RouteConfiguration: its virtual hosts with
// their own names (assembly prefixes them with the configuration's).
type routeConfig struct {
	name   string
	vhosts []config.VirtualHost
}

var (
	rcFields = table(&routev3.RouteConfiguration{}, fieldTable{"name": supported, "virtual_hosts": supported,
		"request_headers_to_add": supported, "request_headers_to_remove": supported,
		"response_headers_to_add": supported, "response_headers_to_remove": supported,
		"validate_clusters": supported, "internal_only_headers": refused, "vhds": refused,
		"most_specific_header_mutations_wins": refused, "cluster_specifier_plugins": refused,
		"typed_per_filter_config": refused, "max_direct_response_body_size_bytes": warned, "metadata": warned,
		"ignore_port_in_host_matching": refused, "request_mirror_policies": refused})
	vhFields = table(&routev3.VirtualHost{}, fieldTable{"name": supported, "domains": supported, "routes": supported,
		"request_headers_to_add": supported, "request_headers_to_remove": supported,
		"response_headers_to_add": supported, "response_headers_to_remove": supported,
		"require_tls": refused, "virtual_clusters": warned, "rate_limits": refused, "cors": refused,
		"typed_per_filter_config": refused, "retry_policy": refused, "hedge_policy": refused, "metadata": warned,
		"include_request_attempt_count": refused, "request_mirror_policies": refused, "matcher": refused})
	routeFields = table(&routev3.Route{}, fieldTable{"name": warned, "match": supported, "route": supported,
		"redirect": supported, "direct_response": supported, "request_headers_to_add": supported,
		"request_headers_to_remove": supported, "response_headers_to_add": supported,
		"response_headers_to_remove": supported, "metadata": warned, "decorator": warned,
		"typed_per_filter_config": refused, "tracing": warned, "filter_action": refused, "non_forwarding_action": refused,
		"per_request_buffer_limit_bytes": refused, "stat_prefix": warned})
	matchFields = table(&routev3.RouteMatch{}, fieldTable{"prefix": supported, "path": supported, "safe_regex": supported,
		"headers": supported, "query_parameters": supported, "case_sensitive": supported,
		"path_separated_prefix": refused, "connect_matcher": refused, "runtime_fraction": refused, "grpc": refused,
		"tls_context": refused, "dynamic_metadata": refused, "path_match_policy": refused, "filter_state": refused})
	actionFields = table(&routev3.RouteAction{}, fieldTable{"cluster": supported, "weighted_clusters": supported,
		"cluster_header": supported, "timeout": supported, "idle_timeout": supported, "retry_policy": supported,
		"prefix_rewrite": supported, "regex_rewrite": supported, "host_rewrite_literal": supported,
		"hash_policy": supported, "request_mirror_policies": supported, "metadata_match": supported,
		"cluster_not_found_response_code": refused, "auto_host_rewrite": refused, "host_rewrite_header": refused,
		"host_rewrite_path_regex": refused, "priority": refused, "rate_limits": refused, "cors": refused,
		"upgrade_configs": refused, "max_stream_duration": refused, "internal_redirect_policy": refused,
		"hedge_policy": refused, "cluster_specifier_plugin": refused, "inline_cluster_specifier_plugin": refused,
		"path_rewrite_policy": refused, "append_x_forwarded_host": refused, "early_data_policy": refused})
	weightedFields = table(&routev3.WeightedCluster{}, fieldTable{"clusters": supported, "total_weight": warned,
		"runtime_key_prefix": refused, "header_name": refused})
	weightFields = table(&routev3.WeightedCluster_ClusterWeight{}, fieldTable{"name": supported, "weight": supported,
		"request_headers_to_add": refused, "request_headers_to_remove": refused, "response_headers_to_add": refused,
		"response_headers_to_remove": refused, "metadata_match": refused, "typed_per_filter_config": refused,
		"host_rewrite_literal": refused, "cluster_header": refused})
	retryFields = table(&routev3.RetryPolicy{}, fieldTable{"retry_on": supported, "num_retries": supported,
		"per_try_timeout": supported, "retry_back_off": supported, "retriable_status_codes": supported,
		"retry_priority": refused, "retry_host_predicate": refused, "host_selection_retry_max_attempts": refused,
		"retriable_headers": refused, "retriable_request_headers": refused, "rate_limited_retry_back_off": refused,
		"per_try_idle_timeout": refused, "retry_options_predicates": refused})
	backoffFields  = table(&routev3.RetryPolicy_RetryBackOff{}, fieldTable{"base_interval": supported, "max_interval": supported})
	headerFields   = table(&routev3.HeaderMatcher{}, fieldTable{"name": supported, "string_match": supported, "present_match": supported, "invert_match": supported, "exact_match": supported, "safe_regex_match": supported, "prefix_match": supported, "suffix_match": supported, "contains_match": supported, "range_match": refused, "treat_missing_header_as_empty": refused})
	queryFields    = table(&routev3.QueryParameterMatcher{}, fieldTable{"name": supported, "string_match": supported, "present_match": supported})
	stringFields   = table(&matcherv3.StringMatcher{}, fieldTable{"exact": supported, "prefix": supported, "suffix": supported, "contains": supported, "safe_regex": supported, "ignore_case": supported, "custom": refused})
	regexFields    = table(&matcherv3.RegexMatcher{}, fieldTable{"regex": supported, "google_re2": warned})
	redirectFields = table(&routev3.RedirectAction{}, fieldTable{"scheme_redirect": supported, "host_redirect": supported,
		"path_redirect": supported, "prefix_rewrite": supported, "response_code": supported, "strip_query": supported,
		"https_redirect": supported, "port_redirect": refused, "regex_rewrite": refused})
	directFields = table(&routev3.DirectResponseAction{}, fieldTable{"status": supported, "body": supported, "body_format": refused})
	hvoFields    = table(&corev3.HeaderValueOption{}, fieldTable{"header": supported, "append": supported, "append_action": supported, "keep_empty_value": refused})
	hashFields   = table(&routev3.RouteAction_HashPolicy{}, fieldTable{"header": supported, "cookie": supported, "connection_properties": supported, "terminal": refused, "query_parameter": refused, "filter_state": refused})
	mirrorFields = table(&routev3.RouteAction_RequestMirrorPolicy{}, fieldTable{"cluster": supported, "runtime_fraction": supported, "cluster_header": refused, "trace_sampled": warned, "disable_shadow_host_suffix_append": refused})
)

// translateRoutes turns a RouteConfiguration into virtual hosts; the
// configuration's header changes move to each of its virtual hosts
// (applied after the host's own, as Envoy's are the outermost).
func (t *tr) translateRoutes(p string, rc *routev3.RouteConfiguration) *routeConfig {
	t.check(p, rc, rcFields)
	out := &routeConfig{name: rc.GetName()}
	outer := t.headerOps(p, rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(), rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove())
	for i, vh := range rc.GetVirtualHosts() {
		vp := idx(join(p, "virtual_hosts"), i)
		t.check(vp, vh, vhFields)
		v := config.VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		v.HeaderOps = t.headerOps(vp, vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove(), vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove())
		v.HeaderOps = mergeOps(v.HeaderOps, outer)
		for j, r := range vh.GetRoutes() {
			v.Routes = append(v.Routes, t.route(idx(vp+".routes", j), r))
		}
		out.vhosts = append(out.vhosts, v)
	}
	return out
}

func mergeOps(a, b config.HeaderOps) config.HeaderOps {
	a.RequestHeadersToAdd = append(a.RequestHeadersToAdd, b.RequestHeadersToAdd...)
	a.RequestHeadersToRemove = append(a.RequestHeadersToRemove, b.RequestHeadersToRemove...)
	a.ResponseHeadersToAdd = append(a.ResponseHeadersToAdd, b.ResponseHeadersToAdd...)
	a.ResponseHeadersToRemove = append(a.ResponseHeadersToRemove, b.ResponseHeadersToRemove...)
	return a
}

func (t *tr) headerOps(p string, reqAdd []*corev3.HeaderValueOption, reqRm []string, respAdd []*corev3.HeaderValueOption, respRm []string) config.HeaderOps {
	return config.HeaderOps{
		RequestHeadersToAdd: t.headersToAdd(p+".request_headers_to_add", reqAdd), RequestHeadersToRemove: reqRm,
		ResponseHeadersToAdd: t.headersToAdd(p+".response_headers_to_add", respAdd), ResponseHeadersToRemove: respRm,
	}
}

func (t *tr) headersToAdd(p string, hs []*corev3.HeaderValueOption) []config.HeaderValue {
	var out []config.HeaderValue
	for i, h := range hs {
		hp := idx(p, i)
		t.check(hp, h, hvoFields)
		// Envoy appends unless told otherwise (append defaults to true;
		// append_action APPEND_IF_EXISTS_OR_ADD is its default too).
		app := true
		if h.GetAppend() != nil {
			app = h.GetAppend().GetValue()
		} else if h.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.fail(hp+".append_action", "%s is not supported", h.GetAppendAction())
			}
			app = false
		}
		v := h.GetHeader().GetValue()
		if len(h.GetHeader().GetRawValue()) > 0 {
			v = string(h.GetHeader().GetRawValue())
		}
		out = append(out, config.HeaderValue{Name: h.GetHeader().GetKey(), Value: v, Append: app})
	}
	return out
}

func (t *tr) route(p string, r *routev3.Route) config.Route {
	t.check(p, r, routeFields)
	var out config.Route
	config.SetDefaults(&out)
	t.match(p+".match", r.GetMatch(), &out)
	switch {
	case r.GetRoute() != nil:
		t.action(p+".route", r.GetRoute(), &out)
	case r.GetRedirect() != nil:
		t.redirect(p+".redirect", r.GetRedirect(), &out)
	case r.GetDirectResponse() != nil:
		d := r.GetDirectResponse()
		t.check(p+".direct_response", d, directFields)
		out.DirectResponse = &config.DirectResponse{Status: int(d.GetStatus())}
		if b := d.GetBody(); b != nil {
			out.DirectResponse.Body = string(t.data(p+".direct_response.body", b))
		}
	default:
		t.fail(p, "one of route, redirect or direct_response is required")
	}
	out.HeaderOps = t.headerOps(p, r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(), r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove())
	return out
}

func (t *tr) match(p string, m *routev3.RouteMatch, out *config.Route) {
	t.check(p, m, matchFields)
	caseInsensitive := m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
	switch {
	case m.GetSafeRegex() != nil:
		t.check(p+".safe_regex", m.GetSafeRegex(), regexFields)
		out.Regex = m.GetSafeRegex().GetRegex()
		if caseInsensitive {
			out.Regex = "(?i)" + out.Regex
		}
	case caseInsensitive:
		// Envoy compares prefix and path ignoring case: the same as an
		// anchored, case-insensitive regex.
		if pm, ok := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); ok {
			out.Regex = "(?i)" + regexp.QuoteMeta(pm.Prefix) + ".*"
		} else {
			out.Regex = "(?i)" + regexp.QuoteMeta(m.GetPath())
		}
	case m.GetPathSpecifier() == nil:
		t.fail(p, "one of prefix, path or safe_regex is required")
	default:
		out.Prefix, out.Path = m.GetPrefix(), m.GetPath()
		if _, ok := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); ok && out.Prefix == "" {
			out.Prefix = "/" // Envoy's "" prefix matches every path
		}
	}
	for i, h := range m.GetHeaders() {
		hp := idx(p+".headers", i)
		t.check(hp, h, headerFields)
		if h.GetName() == ":method" && h.GetStringMatch().GetExact() != "" && !h.GetInvertMatch() {
			out.Methods = append(out.Methods, h.GetStringMatch().GetExact())
			continue
		}
		vm := config.ValueMatcher{Name: h.GetName(), Invert: h.GetInvertMatch()}
		switch hm := h.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			present := hm.PresentMatch
			vm.Present = &present
		case *routev3.HeaderMatcher_StringMatch:
			t.stringMatcher(hp+".string_match", hm.StringMatch, &vm)
		case *routev3.HeaderMatcher_ExactMatch:
			t.stringMatcher(hp, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: hm.ExactMatch}}, &vm)
		case *routev3.HeaderMatcher_PrefixMatch:
			t.stringMatcher(hp, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: hm.PrefixMatch}}, &vm)
		case *routev3.HeaderMatcher_SuffixMatch:
			t.stringMatcher(hp, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: hm.SuffixMatch}}, &vm)
		case *routev3.HeaderMatcher_ContainsMatch:
			t.stringMatcher(hp, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: hm.ContainsMatch}}, &vm)
		case *routev3.HeaderMatcher_SafeRegexMatch:
			t.stringMatcher(hp, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: hm.SafeRegexMatch}}, &vm)
		case nil:
			present := true // no specifier: the header must be present
			vm.Present = &present
		}
		out.Headers = append(out.Headers, vm)
	}
	for i, q := range m.GetQueryParameters() {
		qp := idx(p+".query_parameters", i)
		t.check(qp, q, queryFields)
		vm := config.ValueMatcher{Name: q.GetName()}
		if q.GetPresentMatch() {
			present := true
			vm.Present = &present
		} else if q.GetStringMatch() != nil {
			t.stringMatcher(qp+".string_match", q.GetStringMatch(), &vm)
		} else {
			t.fail(qp, "one of string_match or present_match is required")
		}
		out.QueryParameters = append(out.QueryParameters, vm)
	}
}

// stringMatcher puts a StringMatcher into a value matcher: exact stays
// exact, the others become an anchored RE2 (matched against the whole
// value), ignore_case a (?i) flag.
func (t *tr) stringMatcher(p string, sm *matcherv3.StringMatcher, vm *config.ValueMatcher) {
	t.check(p, sm, stringFields)
	q := regexp.QuoteMeta
	var re string
	switch mp := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		if !sm.GetIgnoreCase() && mp.Exact != "" {
			vm.Exact = mp.Exact
			return
		}
		re = q(mp.Exact)
	case *matcherv3.StringMatcher_Prefix:
		re = q(mp.Prefix) + "(?s:.*)"
	case *matcherv3.StringMatcher_Suffix:
		re = "(?s:.*)" + q(mp.Suffix)
	case *matcherv3.StringMatcher_Contains:
		re = "(?s:.*)" + q(mp.Contains) + "(?s:.*)"
	case *matcherv3.StringMatcher_SafeRegex:
		t.check(p+".safe_regex", mp.SafeRegex, regexFields)
		re = "(?:" + mp.SafeRegex.GetRegex() + ")"
	default:
		t.fail(p, "a match pattern is required")
		return
	}
	if sm.GetIgnoreCase() {
		re = "(?i)" + re
	}
	vm.Regex = re
}

func (t *tr) action(p string, a *routev3.RouteAction, out *config.Route) {
	t.check(p, a, actionFields)
	switch {
	case a.GetCluster() != "":
		out.Cluster = a.GetCluster()
	case a.GetClusterHeader() != "":
		out.ClusterHeader = a.GetClusterHeader()
	case a.GetWeightedClusters() != nil:
		wc := a.GetWeightedClusters()
		t.check(p+".weighted_clusters", wc, weightedFields)
		for i, c := range wc.GetClusters() {
			t.check(idx(p+".weighted_clusters.clusters", i), c, weightFields)
			w := config.WeightedCluster{Name: c.GetName()}
			setU32w(&w.Weight, c.GetWeight())
			out.WeightedClusters = append(out.WeightedClusters, w)
		}
	default:
		t.fail(p, "one of cluster, cluster_header or weighted_clusters is required")
	}
	if d := a.GetTimeout(); d != nil {
		out.Timeout = t.duration(p+".timeout", d)
	}
	if d := a.GetIdleTimeout(); d != nil {
		v := t.duration(p+".idle_timeout", d)
		out.IdleTimeout = &v
	}
	out.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		out.RegexRewrite = &config.RegexRewrite{Pattern: rr.GetPattern().GetRegex(), Substitution: rr.GetSubstitution()}
	}
	out.HostRewrite = a.GetHostRewriteLiteral()
	if rp := a.GetRetryPolicy(); rp != nil {
		t.retry(p+".retry_policy", rp, out)
	}
	for i, hp := range a.GetHashPolicy() {
		pp := idx(p+".hash_policy", i)
		t.check(pp, hp, hashFields)
		switch {
		case hp.GetHeader() != nil:
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{Header: hp.GetHeader().GetHeaderName()})
		case hp.GetCookie() != nil:
			if hp.GetCookie().GetTtl() != nil || hp.GetCookie().GetPath() != "" {
				t.fail(pp+".cookie", "generated cookies (ttl, path) are not supported")
			}
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{Cookie: hp.GetCookie().GetName()})
		case hp.GetConnectionProperties().GetSourceIp():
			out.HashPolicy = append(out.HashPolicy, config.HashPolicy{SourceIP: true})
		default:
			t.fail(pp, "one of header, cookie or connection_properties.source_ip is required")
		}
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		mp := idx(p+".request_mirror_policies", i)
		t.check(mp, m, mirrorFields)
		mc := config.MirrorPolicy{Cluster: m.GetCluster()}
		config.SetDefaults(&mc)
		if f := m.GetRuntimeFraction().GetDefaultValue(); f != nil {
			den := map[string]uint32{"HUNDRED": 100, "TEN_THOUSAND": 10000, "MILLION": 1000000}[f.GetDenominator().String()]
			mc.Percent = int(uint64(f.GetNumerator()) * 100 / uint64(den))
		}
		out.RequestMirrorPolicies = append(out.RequestMirrorPolicies, mc)
	}
	if md := a.GetMetadataMatch().GetFilterMetadata()["envoy.lb"]; md != nil {
		out.MetadataMatch = map[string]string{}
		for k, v := range md.GetFields() {
			out.MetadataMatch[k] = v.GetStringValue()
		}
	}
}

// retryOn are the Envoy retry conditions proxylab honours.
var retryOn = map[string]bool{"connect-failure": true, "reset": true, "5xx": true, "gateway-error": true, "retriable-status-codes": true}

func (t *tr) retry(p string, rp *routev3.RetryPolicy, out *config.Route) {
	t.check(p, rp, retryFields)
	r := &config.RetryPolicy{}
	config.SetDefaults(r)
	for _, on := range strings.Split(rp.GetRetryOn(), ",") {
		on = strings.TrimSpace(on)
		if on == "" {
			continue
		}
		if !retryOn[on] {
			t.fail(p+".retry_on", "condition %q is not supported (connect-failure, reset, 5xx, gateway-error, retriable-status-codes)", on)
			continue
		}
		r.RetryOn = append(r.RetryOn, on)
	}
	setU32(&r.NumRetries, rp.GetNumRetries())
	if d := rp.GetPerTryTimeout(); d != nil {
		r.PerTryTimeout = t.duration(p+".per_try_timeout", d)
	}
	if b := rp.GetRetryBackOff(); b != nil {
		t.check(p+".retry_back_off", b, backoffFields)
		if d := b.GetBaseInterval(); d != nil {
			r.BaseInterval = t.duration(p+".retry_back_off.base_interval", d)
			r.MaxInterval = 10 * r.BaseInterval // Envoy's default
		}
		if d := b.GetMaxInterval(); d != nil {
			r.MaxInterval = t.duration(p+".retry_back_off.max_interval", d)
		}
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		r.RetriableStatusCodes = append(r.RetriableStatusCodes, int(c))
	}
	out.RetryPolicy = r
}

func (t *tr) redirect(p string, rd *routev3.RedirectAction, out *config.Route) {
	t.check(p, rd, redirectFields)
	r := &config.Redirect{HostRedirect: rd.GetHostRedirect(), PathRedirect: rd.GetPathRedirect(),
		PrefixRewrite: rd.GetPrefixRewrite(), StripQuery: rd.GetStripQuery(), SchemeRedirect: rd.GetSchemeRedirect()}
	if rd.GetHttpsRedirect() {
		r.SchemeRedirect = "https"
	}
	switch rd.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		r.ResponseCode = 301
	case routev3.RedirectAction_FOUND:
		r.ResponseCode = 302
	case routev3.RedirectAction_SEE_OTHER:
		r.ResponseCode = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		r.ResponseCode = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		r.ResponseCode = 308
	}
	out.Redirect = r
}
