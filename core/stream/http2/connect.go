package http2

import (
	"crypto/rand"
	"encoding/base64"
	"strings"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/stream"
)

// CONNECT (RFC 9113 §8.5) and extended CONNECT (RFC 8441). A plain CONNECT
// (:method and :authority only) becomes a head with Method CONNECT and the
// authority as Target and Host. An extended CONNECT (:protocol, :scheme,
// :path, :authority; accepted only when the server advertised
// SETTINGS_ENABLE_CONNECT_PROTOCOL) becomes the HTTP/1.1 upgrade request it
// stands for: GET :path with Upgrade: <protocol> (Head.Upgrade set), and for
// WebSocket a Sec-WebSocket-Key (RFC 8441 has none; the HTTP/1.1 hop needs
// one) and Sec-WebSocket-Version 13 when absent. Either is an upgrade
// candidate (stream.UpgradeType); the response that opens the tunnel is sent
// as 200 (a 101 from an HTTP/1.1 upstream, its Sec-WebSocket-Accept
// dropped), and the stream's DATA are the tunnel's bytes.

// hostName is the name :authority is forwarded under (shared, read-only).
var hostName = []byte("host")

// requestHead maps a request's field list to a head (http2.RequestHead,
// the wire rules) and finishes a CONNECT (connectHead, the tunnel rules);
// it returns a reason when the request is malformed.
func requestHead(fields []http2.HeaderField, h *protocol.Head) string {
	var p http2.Pseudo
	if why := http2.RequestHead(fields, h, &p); why != "" || p.Method != "CONNECT" {
		return why
	}
	return connectHead(h, &p)
}

// connectHead finishes the head of a CONNECT whose fields
// http2.RequestHead validated: a plain CONNECT targets its authority; an
// extended one becomes GET :path with Upgrade: :protocol. It returns a
// reason when the request is malformed.
func connectHead(h *protocol.Head, p *http2.Pseudo) string {
	if h.ContentLength >= 0 {
		return "CONNECT with content-length"
	}
	var hasKey, hasVersion bool
	for _, f := range h.Headers.Fields {
		switch string(f.Name) {
		case "sec-websocket-key":
			hasKey = true
		case "sec-websocket-version":
			hasVersion = true
		}
	}
	h.Headers.Append(hostName, http2.BytesOf(p.Authority)) // :authority wins (requestHead dropped host)
	if !p.Has[4] {
		h.Target = http2.BytesOf(p.Authority)
		return ""
	}
	if !protocol.ValidToken(p.Protocol) {
		return "invalid :protocol"
	}
	if p.Path[0] != '/' {
		return "invalid :path"
	}
	h.Method, h.Upgrade = http2.BytesOf("GET"), true
	h.Headers.Append([]byte("upgrade"), http2.BytesOf(p.Protocol))
	if strings.EqualFold(p.Protocol, "websocket") {
		if !hasKey {
			h.Headers.Append([]byte("sec-websocket-key"), newWebSocketKey())
		}
		if !hasVersion {
			h.Headers.Append([]byte("sec-websocket-version"), []byte("13"))
		}
	}
	return ""
}

// newWebSocketKey is a fresh Sec-WebSocket-Key (RFC 6455 §4.1: 16 random
// bytes, base64).
func newWebSocketKey() []byte {
	var k [16]byte
	rand.Read(k[:])
	return base64.StdEncoding.AppendEncode(nil, k[:])
}

// tunnelOpens reports whether a response opens the tunnel: 101 to an
// extended CONNECT (from an HTTP/1.1 upgrade; a 200 is not one, it would
// be a response of the proxy's own), 2xx to a CONNECT.
func (s *serverStream) tunnelOpens(h *stream.Head) bool {
	if s.ext {
		return h.Status == 101
	}
	return h.Status >= 200 && h.Status < 300
}

// tunnelResponseFields maps the response that opens a tunnel: 200 for a
// 101, no Sec-WebSocket-Accept (RFC 8441 §5), no content-length.
func tunnelResponseFields(dst []http2.HeaderField, h *protocol.Head) []http2.HeaderField {
	status := h.Status
	if status == 101 {
		status = 200
	}
	dst = append(dst, http2.HeaderField{Name: ":status", Value: http2.StatusString(status)})
	n := len(dst)
	dst = http2.AppendRegular(dst, &h.Headers, false)
	kept := dst[:n]
	for _, f := range dst[n:] {
		if f.Name != "sec-websocket-accept" && f.Name != "content-length" {
			kept = append(kept, f)
		}
	}
	return kept
}

// encodeTunnelHead answers a CONNECT stream; false when the response is an
// ordinary one (the request then ended with its head).
func (s *serverStream) encodeTunnelHead(h *stream.Head) bool {
	if !s.tunnelOpens(h) {
		s.tunnel = false
		return false
	}
	s.tunOn, s.headSent = true, true
	sc := s.sc
	sc.encFields = tunnelResponseFields(sc.encFields[:0], h)
	sc.writeHeaders(s.st, sc.encFields, false)
	return true
}

// tunnelData sends tunnel bytes; the stream completes once both sides
// ended (a half-closed tunnel keeps receiving).
func (s *serverStream) tunnelData(p []byte, end bool) {
	if s.respEnded {
		return
	}
	s.respEnded = end
	if s.sc.sendData(s.st, p, end) {
		s.dec.OnAboveWriteHighWatermark()
	}
	if end && s.st.remoteDone {
		s.complete()
	}
}

// checkConnect refuses what a CONNECT stream cannot be: extended CONNECT
// not advertised (RFC 8441 §3), or a request ending with its head.
func (sc *ServerConn) checkConnect(ss *serverStream, end bool) string {
	switch {
	case ss.ext && !sc.set.EnableConnectProtocol:
		return ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL"
	case end:
		return "CONNECT with END_STREAM on its HEADERS"
	}
	return ""
}
