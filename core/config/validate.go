package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/foundation/registry"
)

func (c *Config) validate(k Known) Errors {
	var es Errors
	add := func(path, format string, args ...any) {
		es = append(es, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(k.Transports, c.Transport) {
		add("transport", "unknown transport %q (available: %s)", c.Transport, strings.Join(k.Transports, ", "))
	}
	if c.Workers < 0 {
		add("workers", "must be >= 0")
	}
	if c.CPUs != "" {
		if _, err := ParseCPUList(c.CPUs); err != nil {
			add("cpus", "%v", err)
		}
	}
	if c.DemoUpstream != nil {
		checkAddr(c.DemoUpstream.Address, "demo_upstream.address", add)
	}
	if c.Admin != nil {
		checkAddr(c.Admin.Address, "admin.address", add)
	}

	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		p := fmt.Sprintf("clusters[%d]", i)
		switch {
		case cl.Name == "":
			add(p+".name", "required")
		case clusters[cl.Name]:
			add(p+".name", "duplicate cluster name %q", cl.Name)
		}
		clusters[cl.Name] = true
		if cl.LB == "" {
			cl.LB, c.Clusters[i].LB = k.DefaultLB, k.DefaultLB
		}
		if cl.LB != "" && !slices.Contains(k.LBs, cl.LB) {
			add(p+".lb", "unknown policy %q (available: %s)", cl.LB, strings.Join(k.LBs, ", "))
		} else if k.LBOptions != nil {
			for _, err := range k.LBOptions(cl.LB, cl.LBOptions, p+".lb_options") {
				var fe registry.FieldError
				if errors.As(err, &fe) {
					es = append(es, FieldError{Path: fe.Path, Line: fe.Line, Msg: fe.Msg})
				} else {
					add(p+".lb_options", "%v", err)
				}
			}
		}
		if cl.ConnectTimeout <= 0 {
			add(p+".connect_timeout", "must be > 0")
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"max_connections", cl.MaxConnections}, {"max_pending", cl.MaxPending}, {"max_requests_per_connection", cl.MaxRequestsPerConnection}} {
			if f.v < 0 {
				add(p+"."+f.name, "must be >= 0 (0 means unlimited)")
			}
		}
		if len(cl.Hosts) == 0 {
			add(p+".hosts", "at least one host is required")
		}
		if sc := cl.Subsets; sc != nil {
			sp := p + ".lb_subset_config"
			if len(sc.SubsetSelectors) == 0 {
				add(sp+".subset_selectors", "at least one selector (a list of metadata keys) is required")
			}
			switch sc.FallbackPolicy {
			case "no_fallback", "any_endpoint":
			case "default_subset":
				if len(sc.DefaultSubset) == 0 {
					add(sp+".default_subset", "required with fallback_policy default_subset")
				}
			default:
				add(sp+".fallback_policy", "unknown policy %q (no_fallback, any_endpoint, default_subset)", sc.FallbackPolicy)
			}
		}
		if od := cl.OutlierDetection; od != nil {
			op := p + ".outlier_detection"
			if od.Interval <= 0 || od.BaseEjectionTime <= 0 {
				add(op, "interval and base_ejection_time must be > 0")
			}
			if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
				add(op+".max_ejection_percent", "must be 0–100")
			}
			if od.Consecutive5xx < 0 || od.ConsecutiveConnectFailure < 0 {
				add(op, "consecutive counts must be >= 0 (0 disables)")
			}
		}
		cb := cl.CircuitBreakers
		for _, f := range []struct {
			name string
			v    int
		}{{"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_requests", cb.MaxRequests}, {"max_retries", cb.MaxRetries}} {
			if f.v < 0 {
				add(p+".circuit_breakers."+f.name, "must be >= 0 (0 means unlimited)")
			}
		}
		if rb := cb.RetryBudget; rb != nil && (rb.BudgetPercent <= 0 || rb.BudgetPercent > 100 || rb.MinRetryConcurrency < 0) {
			add(p+".circuit_breakers.retry_budget", "budget_percent must be in (0, 100], min_retry_concurrency >= 0")
		}
		if hc := cl.HealthCheck; hc != nil {
			hp := p + ".health_check"
			if hc.Type != "tcp" && hc.Type != "http" {
				add(hp+".type", "unknown type %q (tcp, http)", hc.Type)
			}
			if hc.Interval <= 0 || hc.Timeout <= 0 {
				add(hp, "interval and timeout must be > 0")
			}
			if hc.HealthyThreshold < 1 || hc.UnhealthyThreshold < 1 {
				add(hp, "healthy_threshold and unhealthy_threshold must be >= 1")
			}
			if hc.Type == "http" && !strings.HasPrefix(hc.Path, "/") {
				add(hp+".path", "must start with /")
			}
		}
		if t := cl.TLS; t != nil {
			if !slices.Contains(k.Engines, t.Engine) {
				add(p+".tls.engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(k.Engines, ", "))
			}
			if t.CAFile != "" {
				checkFile(t.CAFile, p+".tls.ca_file", add)
			}
			if c := t.ClientCert; c != nil {
				checkFile(c.CertFile, p+".tls.client_cert.cert_file", add)
				checkKeyFile(c, p+".tls.client_cert.key_file", add)
			}
		}
		if codec, ok := k.codec(cl.Protocol); !ok {
			add(p+".protocol", "unknown protocol %q (%s)", cl.Protocol, strings.Join(k.codecNames(), ", "))
		} else {
			cl.validateOptions(codec.Options, p, add)
		}
		switch cl.Type {
		case "static", "strict_dns":
		default:
			add(p+".type", "unknown type %q (static, strict_dns)", cl.Type)
		}
		if cl.Type == "strict_dns" && cl.DNSRefreshRate <= 0 {
			add(p+".dns_refresh_rate", "must be > 0")
		}
		if cl.DNSResolver != "" {
			checkAddr(cl.DNSResolver, p+".dns_resolver", add)
		}
		for j, h := range cl.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", p, j)
			if cl.Type == "strict_dns" {
				if _, port, err := net.SplitHostPort(h.Address); err != nil || port == "" {
					add(hp+".address", "invalid address %q: want name:port", h.Address)
				}
			} else {
				checkAddr(h.Address, hp+".address", add)
			}
			if h.Weight == 0 {
				add(hp+".weight", "must be >= 1")
			}
		}
	}

	vhosts := map[string]bool{}
	for i, vh := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case vh.Name == "":
			add(p+".name", "required")
		case vhosts[vh.Name]:
			add(p+".name", "duplicate virtual host name %q", vh.Name)
		}
		vhosts[vh.Name] = true
		checkHeaderOps(vh.HeaderOps, p, add)
		if len(vh.Domains) == 0 {
			add(p+".domains", "at least one domain is required (\"*\" matches any)")
		}
		for j, d := range vh.Domains {
			if d == "" || (strings.Count(d, "*") > 0 && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) || strings.Count(d, "*") > 1 {
				add(fmt.Sprintf("%s.domains[%d]", p, j), "invalid domain %q (exact, *.suffix, prefix.* or *)", d)
			}
		}
		for j, r := range vh.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			nPath := r.pathMatchers()
			for _, v := range []string{r.Prefix, r.Path, r.Regex} {
				if v != "" {
					nPath++
				}
			}
			if r.Regex != "" {
				if _, err := regexp.Compile(r.Regex); err != nil {
					add(rp+".regex", "%v", err)
				}
			}
			for j, m := range r.Methods {
				if m == "" || strings.ToUpper(m) != m {
					add(fmt.Sprintf("%s.methods[%d]", rp, j), "method %q must be upper case, e.g. GET", m)
				}
			}
			checkMatchers(r.Headers, rp+".headers", true, add)
			checkMatchers(r.QueryParameters, rp+".query_parameters", false, add)
			switch {
			case nPath != 1:
				add(rp, "exactly one of prefix, path, regex or connect_matcher is required")
			case r.Prefix != "" && !strings.HasPrefix(r.Prefix, "/"):
				add(rp+".prefix", "must start with /")
			case r.Path != "" && !strings.HasPrefix(r.Path, "/"):
				add(rp+".path", "must start with /")
			}
			if r.PrefixRewrite != "" && r.Prefix == "" {
				add(rp+".prefix_rewrite", "needs prefix")
			}
			for j, m := range r.RequestMirrorPolicies {
				mp := fmt.Sprintf("%s.request_mirror_policies[%d]", rp, j)
				if !clusters[m.Cluster] {
					add(mp+".cluster", "unknown cluster %q", m.Cluster)
				}
				if m.Percent < 1 || m.Percent > 100 {
					add(mp+".percent", "must be 1–100")
				}
			}
			if rp2 := r.RetryPolicy; rp2 != nil {
				for j, on := range rp2.RetryOn {
					if !slices.Contains(retryConditions, on) {
						add(fmt.Sprintf("%s.retry_policy.retry_on[%d]", rp, j), "unknown condition %q (%s)", on, strings.Join(retryConditions, ", "))
					}
				}
				if slices.Contains(rp2.RetryOn, "retriable-status-codes") && len(rp2.RetriableStatusCodes) == 0 {
					add(rp+".retry_policy.retriable_status_codes", "required with retriable-status-codes")
				}
				if rp2.BaseInterval <= 0 || rp2.MaxInterval < rp2.BaseInterval {
					add(rp+".retry_policy", "base_interval must be > 0 and max_interval >= base_interval")
				}
				if rp2.NumRetries < 0 || rp2.NumRetries > 10 {
					add(rp+".retry_policy.num_retries", "must be between 0 and 10")
				}
			}
			for h, hp := range r.HashPolicy {
				n := 0
				for _, set := range []bool{hp.Header != "", hp.Cookie != "", hp.SourceIP} {
					if set {
						n++
					}
				}
				if n != 1 {
					add(fmt.Sprintf("%s.hash_policy[%d]", rp, h), "exactly one of header, cookie or source_ip")
				}
			}
			nAct := 0
			for _, set := range []bool{r.Cluster != "", len(r.WeightedClusters) > 0, r.ClusterHeader != "", r.DirectResponse != nil, r.Redirect != nil, r.Connect != nil} {
				if set {
					nAct++
				}
			}
			if nAct != 1 {
				add(rp, "exactly one of cluster, weighted_clusters, cluster_header, direct_response, redirect or connect is required")
			}
			r.RouteTunnel.validate(&r, rp, add)
			if r.Cluster != "" && !clusters[r.Cluster] {
				add(rp+".cluster", "unknown cluster %q", r.Cluster)
			}
			for j, wc := range r.WeightedClusters {
				wp := fmt.Sprintf("%s.weighted_clusters[%d]", rp, j)
				if !clusters[wc.Name] {
					add(wp+".name", "unknown cluster %q", wc.Name)
				}
				if wc.Weight == 0 {
					add(wp+".weight", "must be >= 1")
				}
			}
			if d := r.DirectResponse; d != nil && (d.Status < 200 || d.Status > 599) {
				add(rp+".direct_response.status", "must be 200–599")
			}
			if rd := r.Redirect; rd != nil {
				switch rd.ResponseCode {
				case 0, 301, 302, 303, 307, 308:
				default:
					add(rp+".redirect.response_code", "must be 301, 302, 303, 307 or 308")
				}
				if rd.PathRedirect != "" && rd.PrefixRewrite != "" {
					add(rp+".redirect", "path_redirect and prefix_rewrite exclude each other")
				}
			}
			if rr := r.RegexRewrite; rr != nil {
				if _, err := regexp.Compile(rr.Pattern); err != nil {
					add(rp+".regex_rewrite.pattern", "%v", err)
				}
			}
			checkHeaderOps(r.HeaderOps, rp, add)
		}
	}

	if len(c.Listeners) == 0 {
		add("listeners", "at least one listener is required")
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			add(p+".name", "required")
		case names[l.Name]:
			add(p+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if checkAddr(l.Address, p+".address", add) && addrs[l.Address] {
			add(p+".address", "%s is used by another listener", l.Address)
		}
		addrs[l.Address] = true
		if (l.HTTP == nil) == (l.TCP == nil) {
			add(p, "exactly one of http_proxy or tcp_proxy is required")
		}
		if t := l.TLS; t != nil {
			tp := p + ".tls"
			if !slices.Contains(k.Engines, t.Engine) {
				add(tp+".engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(k.Engines, ", "))
			}
			if len(t.Certificates) == 0 {
				add(tp+".certificates", "at least one certificate is required")
			}
			for j, c := range t.Certificates {
				checkFile(c.CertFile, fmt.Sprintf("%s.certificates[%d].cert_file", tp, j), add)
				checkKeyFile(&c, fmt.Sprintf("%s.certificates[%d].key_file", tp, j), add)
			}
			switch t.ClientAuth {
			case "none", "request":
			case "require":
				if t.ClientCA == "" {
					add(tp+".client_ca", "required when client_auth is require")
				}
			default:
				add(tp+".client_auth", "unknown policy %q (none, request, require)", t.ClientAuth)
			}
			if t.ClientCA != "" {
				checkFile(t.ClientCA, tp+".client_ca", add)
			}
			for _, v := range []struct{ name, v string }{{"min_version", t.MinVersion}, {"max_version", t.MaxVersion}} {
				if v.v != "" && v.v != "1.2" && v.v != "1.3" {
					add(tp+"."+v.name, "must be 1.2 or 1.3")
				}
			}
		}
		if h := l.HTTP; h != nil {
			hp := p + ".http_proxy"
			h.HTTPTunnels.validate(hp, add)
			for j, v := range h.VirtualHosts {
				if !vhosts[v] {
					add(fmt.Sprintf("%s.virtual_hosts[%d]", hp, j), "unknown virtual host %q", v)
				}
			}
			if len(c.Routes) == 0 {
				add(hp, "no routes are configured (top-level routes)")
			}
			for _, f := range []struct {
				name string
				v    int
			}{{"max_request_line", h.MaxRequestLine}, {"max_header_bytes", h.MaxHeaderBytes}, {"max_headers", h.MaxHeaders}, {"max_request_buffer", h.MaxRequestBuffer}, {"high_watermark", h.HighWatermark}} {
				if f.v <= 0 {
					add(hp+"."+f.name, "must be > 0")
				}
			}
			if h.StreamIdleTimeout < 0 || h.RequestTimeout < 0 {
				add(hp, "stream_idle_timeout and request_timeout must be >= 0 (0: off)")
			}
			if h.MaxRequestLine > h.MaxHeaderBytes {
				add(hp+".max_request_line", "must not exceed max_header_bytes")
			}
			checkHeaderOps(h.HeaderOps, hp, add)
			if _, ok := k.codec(h.Codec); !ok && h.Codec != CodecAuto {
				add(hp+".codec", "unknown codec %q (%s)", h.Codec, strings.Join(k.codecNames(CodecAuto), ", "))
			}
			h.HTTP2.validate(hp+".http2_protocol_options", add)
			if al := h.AccessLog; al != nil {
				if al.Path == "" {
					add(hp+".access_log.path", "required (stdout, stderr or a file)")
				}
				if al.Buffer <= 0 {
					add(hp+".access_log.buffer", "must be > 0")
				}
				if al.Format != "" {
					if _, err := accesslog.ParseFormat(al.Format); err != nil {
						add(hp+".access_log.format", "%v", err)
					}
				}
			}
		}
		if t := l.TCP; t != nil {
			tp := p + ".tcp_proxy"
			if t.Cluster == "" {
				add(tp+".cluster", "required")
			} else if !clusters[t.Cluster] {
				add(tp+".cluster", "unknown cluster %q", t.Cluster)
			}
			if t.HighWatermark <= 0 {
				add(tp+".high_watermark", "must be > 0")
			}
			if t.IdleTimeout < 0 {
				add(tp+".idle_timeout", "must be >= 0 (0: off)")
			}
		}
	}
	c.checkRouteProtocols(k, add)
	return es
}

func checkHeaderOps(h HeaderOps, path string, add func(string, string, ...any)) {
	for _, l := range []struct {
		name string
		vs   []HeaderValue
	}{{"request_headers_to_add", h.RequestHeadersToAdd}, {"response_headers_to_add", h.ResponseHeadersToAdd}} {
		for i, hv := range l.vs {
			if hv.Name == "" || strings.ContainsAny(hv.Name, " :\r\n") {
				add(fmt.Sprintf("%s.%s[%d].name", path, l.name, i), "invalid header name %q", hv.Name)
			}
			if strings.ContainsAny(hv.Value, "\r\n\x00") {
				add(fmt.Sprintf("%s.%s[%d].value", path, l.name, i), "control characters are not allowed")
			}
		}
	}
}

func checkMatchers(ms []ValueMatcher, path string, invertOK bool, add func(string, string, ...any)) {
	for i, m := range ms {
		p := fmt.Sprintf("%s[%d]", path, i)
		if m.Name == "" {
			add(p+".name", "required")
		}
		n := 0
		if m.Exact != "" {
			n++
		}
		if m.Regex != "" {
			n++
			if _, err := regexp.Compile(m.Regex); err != nil {
				add(p+".regex", "%v", err)
			}
		}
		if m.Present != nil {
			n++
		}
		if n != 1 {
			add(p, "exactly one of exact, regex or present")
		}
		if m.Invert && !invertOK {
			add(p+".invert", "not supported for query parameters")
		}
	}
}

func checkFile(name, path string, add func(string, string, ...any)) {
	if name == "" {
		add(path, "required")
		return
	}
	if _, err := os.Stat(name); err != nil {
		add(path, "%v", err)
	}
}

func checkAddr(a, path string, add func(string, string, ...any)) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		add(path, "invalid address %q: want host:port", a)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add(path, "invalid port %q", port)
		return false
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		add(path, "host %q must be an IP address or localhost", host)
		return false
	}
	return true
}
