package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/proxylab/proxylab/core/accesslog"
)

// validateListeners checks the listeners (after the clusters and virtual
// hosts, which they name).
func (c *Config) validateListeners(v *checker) {
	if len(c.Listeners) == 0 {
		v.add("listeners", "at least one listener is required")
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			v.add(p+".name", "required")
		case names[l.Name]:
			v.add(p+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if checkAddr(l.Address, p+".address", v.add) && addrs[l.Address] {
			v.add(p+".address", "%s is used by another listener", l.Address)
		}
		addrs[l.Address] = true
		if (l.HTTP == nil) == (l.TCP == nil) {
			v.add(p, "exactly one of http_proxy or tcp_proxy is required")
		}
		if t := l.TLS; t != nil {
			t.validate(p+".tls", v)
		}
		if h := l.HTTP; h != nil {
			h.validate(p+".http_proxy", c, v)
		}
		if t := l.TCP; t != nil {
			tp := p + ".tcp_proxy"
			if t.Cluster == "" {
				v.add(tp+".cluster", "required")
			} else if !v.clusters[t.Cluster] {
				v.add(tp+".cluster", "unknown cluster %q", t.Cluster)
			}
			if t.HighWatermark <= 0 {
				v.add(tp+".high_watermark", "must be > 0")
			}
			if t.IdleTimeout < 0 {
				v.add(tp+".idle_timeout", "must be >= 0 (0: off)")
			}
			if t.AccessLog != nil {
				checkAccessLog(t.AccessLog, tp+".access_log", v.add)
			}
		}
	}
}

// validate checks a listener's tls block at tp.
func (t *ListenerTLS) validate(tp string, v *checker) {
	if !slices.Contains(v.k.Engines, t.Engine) {
		v.add(tp+".engine", "unknown engine %q (available: %s)", t.Engine, strings.Join(v.k.Engines, ", "))
	}
	if len(t.Certificates) == 0 {
		v.add(tp+".certificates", "at least one certificate is required")
	}
	for j, c := range t.Certificates {
		checkFile(c.CertFile, fmt.Sprintf("%s.certificates[%d].cert_file", tp, j), v.add)
		checkKeyFile(&c, fmt.Sprintf("%s.certificates[%d].key_file", tp, j), v.add)
	}
	switch t.ClientAuth {
	case "none", "request":
	case "require":
		if t.ClientCA == "" {
			v.add(tp+".client_ca", "required when client_auth is require")
		}
	default:
		v.add(tp+".client_auth", "unknown policy %q (none, request, require)", t.ClientAuth)
	}
	if t.ClientCA != "" {
		checkFile(t.ClientCA, tp+".client_ca", v.add)
	}
	for _, f := range []struct{ name, v string }{{"min_version", t.MinVersion}, {"max_version", t.MaxVersion}} {
		if f.v != "" && f.v != "1.2" && f.v != "1.3" {
			v.add(tp+"."+f.name, "must be 1.2 or 1.3")
		}
	}
}

// validate checks a listener's http_proxy block at hp; c is the whole
// config (its routes).
func (h *HTTPProxy) validate(hp string, c *Config, v *checker) {
	h.HTTPTunnels.validate(hp, v.add)
	for j, name := range h.VirtualHosts {
		if !v.vhosts[name] {
			v.add(fmt.Sprintf("%s.virtual_hosts[%d]", hp, j), "unknown virtual host %q", name)
		}
	}
	if len(c.Routes) == 0 {
		v.add(hp, "no routes are configured (top-level routes)")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_request_line", h.MaxRequestLine}, {"max_header_bytes", h.MaxHeaderBytes}, {"max_headers", h.MaxHeaders}, {"max_request_buffer", h.MaxRequestBuffer}, {"high_watermark", h.HighWatermark}} {
		if f.v <= 0 {
			v.add(hp+"."+f.name, "must be > 0")
		}
	}
	if h.StreamIdleTimeout < 0 || h.RequestTimeout < 0 {
		v.add(hp, "stream_idle_timeout and request_timeout must be >= 0 (0: off)")
	}
	if h.MaxRequestLine > h.MaxHeaderBytes {
		v.add(hp+".max_request_line", "must not exceed max_header_bytes")
	}
	checkHeaderOps(h.HeaderOps, hp, v.add)
	if h.Tracing != nil {
		h.Tracing.validate(hp+".tracing", v.add)
	}
	if _, ok := v.k.codec(h.Codec); !ok && h.Codec != CodecAuto {
		v.add(hp+".codec", "unknown codec %q (%s)", h.Codec, strings.Join(v.k.codecNames(CodecAuto), ", "))
	}
	validateCodecOptions(h.Options, v.k.codecKeys(httpProxyType), hp, v)
	if al := h.AccessLog; al != nil {
		if al.Path == "" {
			v.add(hp+".access_log.path", "required (stdout, stderr or a file)")
		}
		if al.Buffer <= 0 {
			v.add(hp+".access_log.buffer", "must be > 0")
		}
		if al.Format != "" {
			if _, err := accesslog.ParseFormat(al.Format); err != nil {
				v.add(hp+".access_log.format", "%v", err)
			}
		}
	}
}
