package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// validateRoutes checks the virtual hosts and their routes (after the
// clusters, which they name) and records the virtual host names.
func (c *Config) validateRoutes(v *checker) {
	for i := range c.Routes {
		vh := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case vh.Name == "":
			v.add(p+".name", "required")
		case v.vhosts[vh.Name]:
			v.add(p+".name", "duplicate virtual host name %q", vh.Name)
		}
		v.vhosts[vh.Name] = true
		checkHeaderOps(vh.HeaderOps, p, v.add)
		if len(vh.Domains) == 0 {
			v.add(p+".domains", "at least one domain is required (\"*\" matches any)")
		}
		for j, d := range vh.Domains {
			if d == "" || (strings.Count(d, "*") > 0 && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) || strings.Count(d, "*") > 1 {
				v.add(fmt.Sprintf("%s.domains[%d]", p, j), "invalid domain %q (exact, *.suffix, prefix.* or *)", d)
			}
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			r.validateMatch(rp, v.add)
			r.validateAction(rp, v)
			checkHeaderOps(r.HeaderOps, rp, v.add)
		}
	}
}

// validateMatch checks what a route matches on.
func (r *Route) validateMatch(rp string, add func(string, string, ...any)) {
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
}

// validateAction checks what a route does with a request: mirrors,
// retries, hashing, its one action and the rewrites.
func (r *Route) validateAction(rp string, v *checker) {
	for j, m := range r.RequestMirrorPolicies {
		mp := fmt.Sprintf("%s.request_mirror_policies[%d]", rp, j)
		if !v.clusters[m.Cluster] {
			v.add(mp+".cluster", "unknown cluster %q", m.Cluster)
		}
		if m.Percent < 1 || m.Percent > 100 {
			v.add(mp+".percent", "must be 1–100")
		}
	}
	r.validateRetry(rp, v.add)
	for h, hp := range r.HashPolicy {
		n := 0
		for _, set := range []bool{hp.Header != "", hp.Cookie != "", hp.SourceIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.add(fmt.Sprintf("%s.hash_policy[%d]", rp, h), "exactly one of header, cookie or source_ip")
		}
	}
	nAct := 0
	for _, set := range []bool{r.Cluster != "", len(r.WeightedClusters) > 0, r.ClusterHeader != "", r.DirectResponse != nil, r.Redirect != nil, r.Connect != nil} {
		if set {
			nAct++
		}
	}
	if nAct != 1 {
		v.add(rp, "exactly one of cluster, weighted_clusters, cluster_header, direct_response, redirect or connect is required")
	}
	r.RouteTunnel.validate(r, rp, v.add)
	if r.Cluster != "" && !v.clusters[r.Cluster] {
		v.add(rp+".cluster", "unknown cluster %q", r.Cluster)
	}
	for j, wc := range r.WeightedClusters {
		wp := fmt.Sprintf("%s.weighted_clusters[%d]", rp, j)
		if !v.clusters[wc.Name] {
			v.add(wp+".name", "unknown cluster %q", wc.Name)
		}
		if wc.Weight == 0 {
			v.add(wp+".weight", "must be >= 1")
		}
	}
	r.validateLocalReplies(rp, v.add)
}

func (r *Route) validateRetry(rp string, add func(string, string, ...any)) {
	rp2 := r.RetryPolicy
	if rp2 == nil {
		return
	}
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

// validateLocalReplies checks direct responses, redirects and the regex
// rewrite.
func (r *Route) validateLocalReplies(rp string, add func(string, string, ...any)) {
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
}
