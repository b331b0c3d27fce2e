package proxy

import (
	"crypto/x509"
	"net"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/router"
)

// What a filter sees of its stream (filter.Stream, filter.Info): entry
// methods, under the session unless said otherwise.

func (e *entry) ContinueDecoding() { e.c.resume(e, true) }
func (e *entry) ContinueEncoding() { e.c.resume(e, false) }

func (c *chain) resume(e *entry, dec bool) {
	if c.stopped() || !e.holding(dec) || (dec && c.replied) {
		return
	}
	c.enter()
	defer c.exit()
	c.release(e, dec)
}

// SendLocalReply from a decoder call starts at this filter's encoder side;
// from an encoder call, at the filter before it.
func (e *entry) SendLocalReply(r filter.LocalReply) {
	c := e.c
	if c.stopped() {
		return
	}
	c.enter()
	defer c.exit()
	from := e.pos
	if c.encCalling > 0 {
		from--
	}
	c.localReplyFrom(from, r)
}

// AddDecodedData / AddEncodedData pass p on from the filter's position (its
// own hold when it buffers).
func (e *entry) AddDecodedData(p []byte) { e.c.addData(e, true, p) }
func (e *entry) AddEncodedData(p []byte) { e.c.addData(e, false, p) }

func (c *chain) addData(e *entry, dec bool, p []byte) {
	if c.stopped() || len(p) == 0 {
		return
	}
	c.enter()
	defer c.exit()
	if e.holding(dec) {
		c.addHeld(dec, e.hold(dec), p, false)
		return
	}
	c.passData(dec, c.next(dec, e.pos), p, false)
}

// ClearRouteCache routes the request again: at once during its headers
// phase, else when its head reaches the router.
func (e *entry) ClearRouteCache() {
	c := e.c
	if c.forwarded {
		return
	}
	if c.head != nil {
		c.r.reroute(c.head)
		return
	}
	c.reroute = true
}

// Post runs f under the session from any goroutine; dropped when the
// stream ended first.
func (e *entry) Post(f func()) {
	c := e.c
	go func() {
		sess := c.enc.Session()
		sess.Lock()
		defer sess.Unlock()
		if c.stopped() {
			return
		}
		c.enter()
		defer c.exit()
		f()
	}()
}

func (e *entry) Info() filter.Info { return e }

func (e *entry) State() map[string]any {
	if e.c.state == nil {
		e.c.state = map[string]any{}
	}
	return e.c.state
}

func (e *entry) RemoteAddr() net.Addr { return e.c.r.cm.conn.RemoteAddr() }
func (e *entry) LocalAddr() net.Addr  { return e.c.r.cm.conn.LocalAddr() }

// SNI and PeerCertificate come from the secured connection when its engine
// reports them (optional interfaces).
func (e *entry) SNI() string {
	if s, ok := e.c.r.cm.conn.Transport().(interface{ ServerName() string }); ok {
		return s.ServerName()
	}
	return ""
}

func (e *entry) PeerCertificate() *x509.Certificate {
	if s, ok := e.c.r.cm.conn.Transport().(interface{ PeerCertificate() *x509.Certificate }); ok {
		return s.PeerCertificate()
	}
	return nil
}

func (e *entry) GRPC() bool          { return e.c.r.grpc }
func (e *entry) RPC() bool           { return e.c.r.cm.carries != "http" }
func (e *entry) PerRouteConfig() any { return e.cfg }

func (e *entry) Route() filter.Route {
	c := e.c
	if c.r.route == nil {
		return nil
	}
	c.rv = routeView{r: c.r.route, vh: c.r.vh}
	return &c.rv
}

// routeView is filter.Route over the router's route.
type routeView struct {
	r  *router.Route
	vh *router.VirtualHost
}

func (v *routeView) Name() string { return v.r.Name }
func (v *routeView) VirtualHost() string {
	if v.vh == nil {
		return ""
	}
	return v.vh.Name
}

func (v *routeView) Cluster() string {
	if v.r.Cluster != "" || len(v.r.WeightedClusters) == 0 {
		return v.r.Cluster
	}
	return v.r.WeightedClusters[0].Name
}
