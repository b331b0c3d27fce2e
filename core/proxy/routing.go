package proxy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
)

// DecodeHead is the request head when the listener has no filter chain
// for this connection; with one, the chain calls begin before its filters
// and forward as its terminal step.
func (s *httpStream) DecodeHead(h *stream.Head, end bool) {
	s.begin(h)
	s.forward(h, end)
}

// begin starts the request's access log entry and routes it.
func (s *httpStream) begin(h *stream.Head) {
	if id := s.cm.cfg.Identity; id != nil {
		s.identify(h, id)
	}
	if al := s.cm.cfg.AccessLog; al != nil {
		s.log = al.Get()
		s.log.SetRequest(h.Method, h.Target, h.Headers.Get(hdrHosts), h.Major, h.Minor, h.Headers.Get, al.Format().Headers)
	}
	s.reroute(h)
}

// reroute looks the request's route up (again, when a filter changed what
// routing reads) with the response timeout it sets.
func (s *httpStream) reroute(h *stream.Head) {
	s.route, s.vh = s.cm.cfg.Router.RouteVH(h.Headers.Get(hdrHosts), &router.Request{Method: h.Method, Target: h.Target, Headers: &h.Headers})
	if s.grpc = isGRPC(&h.Headers); s.grpc && s.route != nil {
		s.timeout = s.route.Timeout
		if d, ok := grpcTimeout(h.Headers.Get("grpc-timeout")); ok {
			s.grpcDeadline = time.Now().Add(d)
			if s.timeout <= 0 || d < s.timeout {
				s.timeout = d
			}
		}
	} else if s.route != nil {
		s.timeout = s.route.Timeout
	}
}

// forward runs the route's action for a routed request: the router, the
// filter chain's terminal step.
func (s *httpStream) forward(h *stream.Head, end bool) {
	if s.done {
		return // answered while a filter held it (a timeout)
	}
	s.reqEnd = end
	cfg := s.cm.cfg
	if s.route == nil {
		s.localReply(404, "NR", "no route for this host and path")
		return
	}
	switch {
	case s.route.Direct != nil:
		s.respondDirect(s.route.Direct.Status, s.route.Direct.Body, nil)
		return
	case s.route.Redirect != nil:
		s.redirect(h, s.route.Redirect)
		return
	}
	if s.beginTunnel(h) {
		return
	}
	end = s.reqEnd
	var pick uint32
	if tw := s.route.TotalWeight(); tw > 0 {
		pick = rand.Uint32N(tw)
	}
	name := s.route.PickCluster(pick, h.Headers.Get)
	cl := cfg.Clusters.Get(name)
	if cl == nil {
		s.localReply(503, "NC", fmt.Sprintf("cluster %q not found", name))
		return
	}
	if !s.cm.fits(cl) {
		// Never write a request upstream in another protocol (codec auto,
		// cluster_header: what config validation cannot see).
		s.localReply(503, "NC", fmt.Sprintf("cluster %q speaks another protocol", name))
		return
	}
	if !cl.AdmitRequest() {
		if st := cl.Stats; st != nil {
			st.UpstreamRqOverflow.Inc(s.cm.id)
		}
		s.localReply(503, "UO", "upstream max requests reached (circuit breaker)")
		return
	}
	s.cluster, s.admitted = cl, true
	s.bodyless = end
	if s.route.RetryOn != 0 {
		s.retriesLeft = s.route.NumRetries
	}
	if len(s.route.HashPolicy) > 0 {
		s.lb.Hash, s.lb.HasHash = s.requestHash(h)
	}
	s.lb.Subset = s.route.Subset
	host := cl.Choose(&s.lb)
	if host == nil {
		s.localReply(503, "UH", "no healthy upstream")
		return
	}
	s.host, s.upHost = host, host
	host.ActiveRequests.Add(1)
	host.RqTotal.Inc(s.cm.id)
	if st := cl.Stats; st != nil {
		st.UpstreamRqTotal.Inc(s.cm.id)
		s.upStart = time.Now()
	}
	if s.tun != nil && !s.tunnelUpstreamOK() {
		return
	}
	s.rewrite(h)
	s.startTimers(end)
	if len(s.route.Mirrors) > 0 && s.tun == nil {
		s.startShadows(h, end)
	}
	s.openUpstream(h)
}

// headerOps applies the listener's, the virtual host's and the route's header
// changes, in that order (the most specific wins).
func (s *httpStream) headerOps(hs *protocol.Headers, request bool) {
	for _, ops := range [...]*router.HeaderOps{&s.cm.cfg.HeaderOps, &s.vh.HeaderOps, &s.route.HeaderOps} {
		if request {
			router.Apply(hs, ops.RequestRemove, ops.RequestAdd)
		} else {
			router.Apply(hs, ops.ResponseRemove, ops.ResponseAdd)
		}
	}
	if !request {
		s.identifyResponse(hs)
	}
}

// respondDirect answers with a response of the route's own (no upstream).
func (s *httpStream) respondDirect(status int, body []byte, location []byte) {
	var h protocol.Head
	h.Status, h.ContentLength = status, int64(len(body))
	if len(body) > 0 {
		h.Headers.Add("Content-Type", []byte("text/plain"))
	}
	if location != nil {
		h.Headers.Add("Location", location)
	}
	s.headerOps(&h.Headers, false)
	s.status = status
	s.txBytes = int64(len(body))
	s.finish()
	s.enc.EncodeHead(&h, len(body) == 0)
	if len(body) > 0 {
		s.enc.EncodeData(body, true)
	}
}

// redirect answers with a Location made from the request and the route.
func (s *httpStream) redirect(h *stream.Head, rd *router.Redirect) {
	path, query, hasQuery := bytes.Cut(h.Target, []byte("?"))
	scheme := rd.Scheme
	if scheme == "" {
		scheme = string(s.cm.schemeOf())
	}
	host := rd.Host
	if host == "" {
		host = string(h.Headers.Get(hdrHosts))
	}
	loc := make([]byte, 0, 64+len(h.Target))
	loc = append(append(append(loc, scheme...), "://"...), host...)
	switch {
	case rd.Path != "":
		loc = append(loc, rd.Path...)
	case rd.PrefixRewrite != "" && s.route.Prefix != "":
		loc = append(append(loc, rd.PrefixRewrite...), path[len(s.route.Prefix):]...)
	default:
		loc = append(loc, path...)
	}
	if hasQuery && !rd.StripQuery {
		loc = append(append(loc, '?'), query...)
	}
	code := rd.Code
	if code == 0 {
		code = 301
	}
	s.respondDirect(code, nil, loc)
}

// requestHash applies the route's hash policies: the first that finds a
// value gives the hash consistent load balancers use.
func (s *httpStream) requestHash(h *stream.Head) (uint64, bool) {
	for _, p := range s.route.HashPolicy {
		switch {
		case p.Header != "":
			if v := h.Headers.Get(p.Header); v != nil {
				return upstream.HashKey(v), true
			}
		case p.Cookie != "":
			if v := cookieValue(h.Headers.Get("cookie"), p.Cookie); v != nil {
				return upstream.HashKey(v), true
			}
		case p.SourceIP:
			if len(s.cm.clientIP) > 0 {
				return upstream.HashKey(s.cm.clientIP), true
			}
		}
	}
	return 0, false
}

func randPercent() int { return rand.IntN(100) }

// cookieValue finds name's value in a Cookie header ("a=1; b=2").
func cookieValue(header []byte, name string) []byte {
	for len(header) > 0 {
		var part []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, nil
		}
		part = bytes.TrimSpace(part)
		if len(part) > len(name) && part[len(name)] == '=' && string(part[:len(name)]) == name {
			return part[len(name)+1:]
		}
	}
	return nil
}

// rewrite applies the proxy's request header changes in place.
func (s *httpStream) rewrite(h *stream.Head) {
	cm := s.cm
	if len(cm.clientIP) > 0 {
		if prev := h.Headers.Get(hdrXFFs); prev != nil {
			cm.xffBuf = append(append(append(cm.xffBuf[:0], prev...), ", "...), cm.clientIP...)
			h.Headers.Del(hdrXFFs)
			h.Headers.Append(hdrXFF, cm.xffBuf)
		} else {
			h.Headers.Append(hdrXFF, cm.clientIP)
		}
	}
	h.Headers.Del(hdrXFPs)
	h.Headers.Append(hdrXFP, cm.schemeOf())
	if !h.Headers.Has(hdrHosts) {
		// HTTP/1.0 requests may lack Host; HTTP/1.1 upstreams require it.
		h.Headers.Append(hdrHost, s.host.AddressBytes)
	}
	if p := s.route.PrefixRewrite; p != "" && s.route.Prefix != "" {
		t := make([]byte, 0, len(h.Target)+len(p))
		t = append(append(t, p...), h.Target[len(s.route.Prefix):]...)
		h.Target = t
	}
	if rw := s.route.RegexRewrite; rw != nil {
		path, query, hasQuery := bytes.Cut(h.Target, []byte("?"))
		t := rw.Pattern.ReplaceAll(path, []byte(rw.Substitution))
		if hasQuery {
			sep := byte('?')
			if bytes.IndexByte(t, '?') >= 0 {
				sep = '&' // the substitution made a query of its own
			}
			t = append(append(t, sep), query...)
		}
		h.Target = t
	}
	if hr := s.route.HostRewrite; hr != "" {
		h.Headers.Set("Host", []byte(hr))
	}
	s.headerOps(&h.Headers, true)
}
