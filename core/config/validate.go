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

	"github.com/proxylab/proxylab/foundation/registry"
)

// checker collects validation errors; one per validate call. The
// per-section checks share it so later sections can look up the names
// earlier ones declared (clusters, virtual hosts).
type checker struct {
	k  Known
	es Errors
	// clusters and vhosts are the names declared so far.
	clusters, vhosts map[string]bool
}

// add records an error at path.
func (v *checker) add(path, format string, args ...any) {
	v.es = append(v.es, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// addPlugin records a plugin decoder's errors: registry.FieldErrors keep
// their own path and line, anything else is located at path.
func (v *checker) addPlugin(path string, errs []error) {
	for _, err := range errs {
		var fe registry.FieldError
		if errors.As(err, &fe) {
			v.es = append(v.es, FieldError{Path: fe.Path, Line: fe.Line, Msg: fe.Msg})
		} else {
			v.add(path, "%v", err)
		}
	}
}

// validate checks the whole config section by section (the order of the
// errors follows it); a new section adds one call here.
func (c *Config) validate(k Known) Errors {
	v := &checker{k: k, clusters: map[string]bool{}, vhosts: map[string]bool{}}
	c.validateGlobal(v)
	c.validateClusters(v)
	c.validateRoutes(v)
	c.validateListeners(v)
	c.checkRouteProtocols(k, v.add)
	return v.es
}

// validateGlobal checks the top-level settings outside the lists.
func (c *Config) validateGlobal(v *checker) {
	if !slices.Contains(v.k.Transports, c.Transport) {
		v.add("transport", "unknown transport %q (available: %s)", c.Transport, strings.Join(v.k.Transports, ", "))
	}
	if c.Workers < 0 {
		v.add("workers", "must be >= 0")
	}
	if c.CPUs != "" {
		if _, err := ParseCPUList(c.CPUs); err != nil {
			v.add("cpus", "%v", err)
		}
	}
	if c.DemoUpstream != nil {
		checkAddr(c.DemoUpstream.Address, "demo_upstream.address", v.add)
	}
	if c.Admin != nil {
		checkAddr(c.Admin.Address, "admin.address", v.add)
	}
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
