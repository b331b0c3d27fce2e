package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
)

// Upgrades (WebSocket …) and CONNECT: a stream that becomes a byte tunnel.
// The codecs carry a tunnel's bytes as Data both ways, end=true being a
// half-close (stream.UpgradeType documents the contract); here the proxy
// decides whether a candidate may tunnel, holds the client's early bytes
// until the upstream agreed (101, or 2xx to CONNECT) so nothing reaches an
// upstream that could parse it as a request, ends the stream once both
// directions ended, and closes a tunnel idle for TunnelConfig.IdleTimeout.
//
// Policy: a candidate whose type the route (else the listener) does not
// enable gets 403 (Envoy's behaviour, counted as upgrade refused); an
// HTTP/1.1 "Upgrade: h2c" is forwarded as an ordinary request without its
// upgrade. Upgrades go to HTTP/1.1 upstreams only (501 for an HTTP/2
// cluster). A CONNECT route either terminates CONNECT (router.Connect: the
// proxy dials the authority) or forwards it to its cluster.

// TunnelConfig is a listener's tunnel settings.
type TunnelConfig struct {
	// Upgrades enabled by default on the listener (routes override).
	Upgrades []router.Upgrade
	// IdleTimeout closes a tunnel without a byte either way for that long.
	IdleTimeout time.Duration
	// Transport and ConnectTimeout dial the destinations of terminated
	// CONNECT requests.
	Transport      transport.Transport
	ConnectTimeout time.Duration
}

// TunnelStats count upgrades and tunnels (part of HTTPStats).
type TunnelStats struct {
	// Upgrades established, by type: websocket, CONNECT, any other.
	UpgradesWebSocket, UpgradesConnect, UpgradesOther stats.Counter
	UpgradesRefused                                   stats.Counter
	TunnelsActive                                     stats.Gauge
	TunnelIdleTimeouts                                stats.Counter
}

// tunnel is the tunnel state of one httpStream, made when a candidate is
// accepted; every field is guarded by the downstream session.
type tunnel struct {
	timer.Timer
	s          *httpStream
	typ        []byte // owned copy of the upgrade type
	connect    bool
	up         bool // the upstream agreed: bytes flow
	downEnded  bool // the client half-closed
	upEnded    bool // the upstream half-closed
	counted    bool // counted in TunnelsActive
	last       time.Time
	rawUp      *rawUpstream // a terminated CONNECT's destination
	idleArmed  bool
	idleWindow time.Duration
}

var (
	typeWebSocket = "websocket"
	typeH2C       = []byte("h2c")
)

// beginTunnel runs for every routed request. It returns true when it
// answered the request (refused it, or started a terminated CONNECT).
func (s *httpStream) beginTunnel(h *stream.Head) bool {
	typ := stream.UpgradeType(h)
	if typ == nil {
		return false
	}
	connect := stream.IsConnect(typ)
	if !connect && protocol.EqualFold(typ, string(typeH2C)) {
		h.Upgrade = false // forwarded without it; the request ended with its head
		s.reqEnd = true
		return false
	}
	if connect {
		if _, _, ok := splitAuthority(h.Target); !ok {
			s.localReply(400, "", "CONNECT needs an authority host:port")
			return true // forwarded or terminated, never a malformed one
		}
	}
	if !s.upgradeAllowed(typ) {
		if st := s.cm.cfg.Stats; st != nil {
			st.UpgradesRefused.Inc(s.cm.id)
		}
		s.localReply(403, "", fmt.Sprintf("%s is not allowed on this route", typ))
		return true
	}
	s.tun = &tunnel{s: s, typ: append([]byte(nil), typ...), connect: connect, idleWindow: s.cm.cfg.Tunnels.IdleTimeout}
	if connect && s.route.Connect != nil {
		s.connectDirect(h)
		return true
	}
	return false
}

// upgradeAllowed: the route's word on typ, else the listener's; a route
// terminating CONNECT allows CONNECT.
func (s *httpStream) upgradeAllowed(typ []byte) bool {
	if on, found := s.route.UpgradeEnabled(typ); found {
		return on
	}
	if stream.IsConnect(typ) && s.route.Connect != nil {
		return true
	}
	on, _ := router.FindUpgrade(s.cm.cfg.Tunnels.Upgrades, typ)
	return on
}

// tunnelUpstreamOK checks a tunnel's upstream before the request is sent:
// only a codec saying so (stream.Tunneller; HTTP/1.1) can carry one. It
// answers (false) otherwise.
func (s *httpStream) tunnelUpstreamOK() bool {
	if !s.cluster.CarriesTunnels() {
		s.localReply(501, "", "upgrades and CONNECT are forwarded to HTTP/1.1 upstreams only")
		return false
	}
	s.armTimer() // the response timeout bounds the wait for the upgrade
	return true
}

// tunnelDown takes the client's tunnel bytes: held until the upstream
// agreed, then forwarded.
func (s *httpStream) tunnelDown(p []byte, end bool) {
	t := s.tun
	s.rxBytes += int64(len(p))
	t.last = time.Now()
	if !t.up {
		s.holdRequestData(p, end)
		return
	}
	if t.downEnded {
		return
	}
	t.downEnded = end
	s.up.enc.EncodeData(p, end)
	t.maybeEnd()
}

// tunnelResponse takes the upstream's response head to a tunnel request.
// A tunnelling status starts the tunnel (true); any other is an ordinary
// response to a request that ended with its head (false).
func (u *upstreamRequest) tunnelResponse(h *stream.Head) bool {
	s, t := u.s, u.s.tun
	if !stream.Tunnelled(t.typ, h.Status) {
		s.tun = nil
		s.reqEnd = true
		s.dropPending()
		return false
	}
	t.up = true
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
	u.gotHead, s.respStarted, s.headSaved = true, true, false
	s.respAt, s.reqAt = time.Time{}, time.Time{} // the tunnel's idle timer takes over
	s.cm.disarm(s)
	s.status = h.Status
	if s.cluster != nil {
		s.cluster.ReportResponse(s.host, h.Status)
		if st := s.cluster.Stats; st != nil {
			st.UpstreamRqXX[h.Status/100].Inc(s.cm.id)
		}
	}
	s.headerOps(&h.Headers, false)
	t.established()
	// What the client sent while waiting goes first, then the head; an
	// HTTP/1 client's early bytes follow from its codec.
	for _, b := range s.pending {
		u.enc.EncodeData(b.Bytes(), false)
		b.Release()
	}
	s.pending, s.pendingLen = nil, 0
	if s.bufDisabled {
		s.bufDisabled = false
		s.enc.ReadDisable(false)
	}
	if s.pendingEnd {
		t.downEnded = true
		u.enc.EncodeData(nil, true)
	}
	s.enc.EncodeHead(h, false)
	return true
}

// tunnelUp forwards the upstream's tunnel bytes to the client.
func (u *upstreamRequest) tunnelUp(p []byte, end bool) {
	s, t := u.s, u.s.tun
	s.txBytes += int64(len(p))
	t.last = time.Now()
	if t.upEnded {
		return
	}
	t.upEnded = end
	s.enc.EncodeData(p, end)
	t.maybeEnd()
}

// holdRequestData keeps request bytes until the upstream can take them,
// pausing the client above MaxRequestBuffer.
func (s *httpStream) holdRequestData(p []byte, end bool) {
	if len(p) > 0 {
		s.pending = append(s.pending, bufFrom(p))
		s.pendingLen += len(p)
	}
	s.pendingEnd = s.pendingEnd || end
	if s.pendingLen > s.cm.cfg.MaxRequestBuffer && !s.bufDisabled {
		s.bufDisabled = true
		s.enc.ReadDisable(true)
	}
}

func (s *httpStream) dropPending() {
	for _, b := range s.pending {
		b.Release()
	}
	s.pending, s.pendingLen, s.pendingEnd = nil, 0, false
	if s.bufDisabled {
		s.bufDisabled = false
		s.enc.ReadDisable(false)
	}
}

// established counts the tunnel and starts its idle timer.
func (t *tunnel) established() {
	s := t.s
	if st := s.cm.cfg.Stats; st != nil {
		switch {
		case t.connect:
			st.UpgradesConnect.Inc(s.cm.id)
		case protocol.EqualFold(t.typ, typeWebSocket):
			st.UpgradesWebSocket.Inc(s.cm.id)
		default:
			st.UpgradesOther.Inc(s.cm.id)
		}
		st.TunnelsActive.Add(s.cm.id, 1)
		t.counted = true
	}
	t.last = time.Now()
	if w := s.cm.cfg.Server.Timers; w != nil && t.idleWindow > 0 {
		t.Init(w, t)
		t.idleArmed = true
		t.Reset(t.idleWindow)
	}
}

// maybeEnd finishes the stream once both directions ended.
func (t *tunnel) maybeEnd() {
	if t.downEnded && t.upEnded && !t.s.done {
		t.s.finish()
	}
}

// end releases the tunnel (from httpStream.finish).
func (t *tunnel) end() {
	if t.idleArmed {
		t.idleArmed = false
		t.Stop()
	}
	if t.counted {
		t.counted = false
		t.s.cm.cfg.Stats.TunnelsActive.Add(t.s.cm.id, -1)
	}
}

// Expire runs the idle timeout (timer.Expirer): both sides are reset.
func (t *tunnel) Expire() {
	s := t.s
	sess := s.cm.conn
	sess.Lock()
	defer sess.Unlock()
	if s.done || !t.idleArmed {
		return
	}
	if left := time.Until(t.last.Add(t.idleWindow)); left > 0 {
		t.Reset(left)
		return
	}
	t.idleArmed = false
	if st := s.cm.cfg.Stats; st != nil {
		st.TunnelIdleTimeouts.Inc(s.cm.id)
	}
	s.flags = "SI" // Envoy's stream idle timeout flag
	enc := s.up.enc
	s.finish()
	s.enc.Reset()
	if enc != nil {
		enc.Reset()
	}
}

// connectDirect terminates a CONNECT: checks the authority against the
// route's allow-list and dials it.
func (s *httpStream) connectDirect(h *stream.Head) {
	host, port, _ := splitAuthority(h.Target) // checked by beginTunnel
	if !s.route.Connect.Allows(host, port) {
		if st := s.cm.cfg.Stats; st != nil {
			st.UpgradesRefused.Inc(s.cm.id)
		}
		s.localReply(403, "", "CONNECT to "+net.JoinHostPort(host, port)+" is not allowed")
		return
	}
	tc := s.cm.cfg.Tunnels
	if tc.Transport == nil {
		s.localReply(503, "UF", "no transport to dial CONNECT destinations")
		return
	}
	r := &rawUpstream{s: s, addr: net.JoinHostPort(host, port)}
	s.tun.rawUp = r
	if _, err := netip.ParseAddr(host); err != nil {
		// A name: resolved off the event loop (a transport may resolve
		// synchronously), then dialled by address.
		go r.resolveAndDial(host, port, tc)
		return
	}
	tc.Transport.Dial("tcp", r.addr, tc.ConnectTimeout, r.onConnect)
}

// splitAuthority validates a CONNECT authority (RFC 9110 §9.3.6:
// host:port, port required): a name, IPv4 or [IPv6] host and a decimal
// port 1–65535. host is returned lower case, without brackets.
func splitAuthority(a []byte) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(string(a))
	if err != nil || h == "" {
		return "", "", false
	}
	if _, ok := router.ParsePort(p); !ok {
		return "", "", false
	}
	if a[0] == '[' || strings.IndexByte(h, ':') >= 0 {
		// Brackets hold an IPv6 address and nothing else (RFC 3986 §3.2.2).
		ip, err := netip.ParseAddr(h)
		if a[0] != '[' || err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
			return "", "", false
		}
		return strings.ToLower(h), p, true
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", "", false
		}
	}
	return strings.ToLower(h), p, true
}
