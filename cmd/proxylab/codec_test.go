package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestALPNDecidesCodec: with codec auto over TLS the negotiated ALPN id
// picks the codec before any byte is looked at (the registry's rule): a
// connection that agreed on http/1.1 and then sends the HTTP/2 preface is
// HTTP/1 (505 for the version), not HTTP/2 (RFC 9113 §3.3: h2
// over TLS is negotiated by ALPN); one that agreed on h2 is HTTP/2.
func TestALPNDecidesCodec(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pk := newPKI(t)
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, tlsListenerConfig(tr, pk, up.addr, ""))
		for _, tc := range []struct {
			alpn, want string // want: the start of the proxy's first bytes
		}{
			{"http/1.1", "HTTP/1.1 505"}, // PRI * HTTP/2.0 as an HTTP/1 request line
			{"h2", "\x00\x00"},           // the server's SETTINGS frame: a 3-byte length, small
		} {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.addr("web"), &tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{tc.alpn}})
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if got := conn.ConnectionState().NegotiatedProtocol; got != tc.alpn {
				t.Fatalf("negotiated %q, want %q", got, tc.alpn)
			}
			if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tc.want))
			if _, err := io.ReadFull(bufio.NewReader(conn), got); err != nil {
				t.Fatalf("ALPN %s: %v", tc.alpn, err)
			}
			if !strings.HasPrefix(string(got), tc.want) {
				t.Fatalf("ALPN %s: proxy answered %q, want %q…", tc.alpn, got, tc.want)
			}
			conn.Close()
		}
	})
}
