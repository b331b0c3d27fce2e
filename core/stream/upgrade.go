package stream

import "github.com/proxylab/proxylab/core/protocol"

// Upgrades and CONNECT (RFC 9110 §7.8, §9.3.6): a request that may turn its
// stream into a byte tunnel. Codecs and the proxy share this one predicate,
// so they agree on which requests are tunnel candidates:
//
//   - the request head is delivered with end=false whatever its framing (a
//     candidate has no body: codecs refuse one with a body), and the codec
//     holds any byte the client sends after the head;
//   - the proxy decides: a tunnel is sent upstream as an upgrade (the
//     RequestEncoder writes it so), anything else is forwarded as an
//     ordinary request after the proxy clears Head.Upgrade;
//   - the response head decides what the stream becomes: 101 to an upgrade
//     or 2xx to CONNECT (Tunnelled) makes both directions raw bytes, carried
//     as Data calls, end=true being a half-close; any other status is an
//     ordinary response, and the request counts as complete with its head.

// UpgradeType returns what the request asks to become: "CONNECT" for the
// CONNECT method, the Upgrade field's value for Connection: upgrade with
// an Upgrade field (HTTP/1.1 or later), nil otherwise.
func UpgradeType(h *Head) []byte {
	if string(h.Method) == "CONNECT" {
		return connectType
	}
	if !h.Upgrade || (h.Major < 2 && h.Minor < 1) {
		return nil
	}
	return h.Headers.Get("upgrade")
}

var connectType = []byte("CONNECT")

// IsConnect reports whether an upgrade type is CONNECT.
func IsConnect(typ []byte) bool { return string(typ) == "CONNECT" }

// Tunnelled reports whether a response of status to a request of upgrade
// type typ turns the stream into a tunnel.
func Tunnelled(typ []byte, status int) bool {
	if IsConnect(typ) {
		return status >= 200 && status < 300
	}
	return status == 101
}

// HasUpgradeBody reports whether an upgrade candidate declares a body,
// which codecs refuse (the bytes after its head are the tunnel's).
func HasUpgradeBody(h *protocol.Head) bool { return h.Chunked || h.ContentLength > 0 }
