package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Upgrades (WebSocket) and CONNECT through the proxy (issue #17).

// wsUpstream is a WebSocket echo server (coder/websocket) that also answers
// plain HTTP; it records what the requests it saw looked like.
type wsUpstream struct {
	addr   string
	mu     sync.Mutex
	seen   []string // "path connection=… upgrade=…" per request
	closes chan int // close status codes seen by the echo loop
	hello  bool     // send "hello" as soon as the connection opens
}

func startWSUpstream(t *testing.T) *wsUpstream {
	t.Helper()
	u := &wsUpstream{closes: make(chan int, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/", u.echo)
	mux.HandleFunc("/hello/", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte("hello"))
		time.Sleep(5 * time.Second)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.record(r) // no upgrade here: an ordinary answer
		fmt.Fprintf(w, "plain %s", r.URL.Path)
	})
	up := startUpstream(t, mux)
	u.addr = up.addr
	return u
}

func (u *wsUpstream) record(r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, fmt.Sprintf("%s connection=%q upgrade=%q key=%v", r.URL.Path, r.Header.Get("Connection"), r.Header.Get("Upgrade"), r.Header.Get("Sec-WebSocket-Key") != ""))
	u.mu.Unlock()
}

func (u *wsUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func (u *wsUpstream) echo(w http.ResponseWriter, r *http.Request) {
	u.record(r)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			u.closes <- int(websocket.CloseStatus(err))
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// wsConfig is a proxy with WebSocket enabled on the listener, a route that
// disables it (/nows), and the echo upstream behind everything.
func wsConfig(tr, up, httpExtra string) string {
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
stats: {enabled: true}
listeners:
  - name: http
    address: 127.0.0.1:0
    http_proxy:
      upgrade_configs: [{upgrade_type: websocket}]
%s
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /nows/, cluster: up, upgrade_configs: [{upgrade_type: websocket, enabled: false}]}
      - {prefix: /, cluster: up}
clusters:
  - name: up
    connect_timeout: 1s
    hosts: [{address: %q}]
`, tr, indent(httpExtra, 6), up)
}

// echoSizes checks messages of 1 B, 64 KiB and 1 MiB come back byte-exact,
// then closes normally and checks the upstream saw the close.
func echoSizes(t *testing.T, c *websocket.Conn, up *wsUpstream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.SetReadLimit(4 << 20)
	for _, n := range []int{1, 64 << 10, 1 << 20} {
		msg := make([]byte, n)
		rand.Read(msg)
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatalf("write %d: %v", n, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs (got %d bytes)", n, len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	select {
	case code := <-up.closes:
		if code != int(websocket.StatusNormalClosure) {
			t.Fatalf("upstream saw close status %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not see the close")
	}
}

func TestWebSocketHTTP1(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startWSUpstream(t)
		p := startProxy(t, wsConfig(tr, up.addr, ""))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+p.addr("http")+"/ws/echo", nil)
		if err != nil {
			t.Fatalf("dial: %v %v\n%s", err, resp, p.logs())
		}
		echoSizes(t, c, up)

		// Disabled on the route: refused (403, Envoy's behaviour), the
		// upstream never sees it.
		_, resp, err = websocket.Dial(ctx, "ws://"+p.addr("http")+"/nows/x", nil)
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("upgrade on a disabled route: %v %v", err, resp)
		}
		for _, r := range up.requests() {
			if strings.HasPrefix(r, "/nows/") {
				t.Fatalf("upstream saw the refused upgrade: %s", r)
			}
		}
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		fams := a.scrape()
		if v := value(t, fams, "proxylab_http_downstream_upgrades_total", map[string]string{"type": "websocket"}); v != 1 {
			t.Fatalf("upgrades_total{websocket} = %v", v)
		}
		if v := value(t, fams, "proxylab_http_downstream_upgrades_refused_total", nil); v != 1 {
			t.Fatalf("upgrades_refused_total = %v", v)
		}
	})
}

// An upgrade the upstream declines (no 101) is an ordinary response and
// the connection stays HTTP; h2c is forwarded without its upgrade.
func TestUpgradeDeclinedStaysHTTP(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startWSUpstream(t)
		p := startProxy(t, wsConfig(tr, up.addr, ""))
		c := dialRaw(t, p.addr("http"))
		c.send("GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		resp, body := c.readResponse("GET")
		if resp.StatusCode != 200 || body != "plain /plain" {
			t.Fatalf("declined upgrade: %d %q", resp.StatusCode, body)
		}
		c.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body = c.readResponse("GET"); resp.StatusCode != 200 || body != "plain /again" {
			t.Fatalf("next request on the connection: %d %q", resp.StatusCode, body)
		}
		c.send("GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
		if resp, body = c.readResponse("GET"); resp.StatusCode != 200 || body != "plain /h2c" {
			t.Fatalf("h2c upgrade: %d %q", resp.StatusCode, body)
		}
		seen := up.requests()
		want := []string{`/plain connection="Upgrade" upgrade="websocket" key=true`, `/again connection="" upgrade="" key=false`, `/h2c connection="" upgrade="" key=false`}
		if strings.Join(seen, "\n") != strings.Join(want, "\n") {
			t.Fatalf("upstream saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
		}
		// An upgrade request with a body is refused.
		c2 := dialRaw(t, p.addr("http"))
		c2.send("POST /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc")
		if resp, _ := c2.readResponse("POST"); resp.StatusCode != 400 {
			t.Fatalf("upgrade with a body: %d", resp.StatusCode)
		}
	})
}

// Bytes the client sends right behind the upgrade request reach the
// upstream after the 101, never before (where they would parse as a
// request); curl performs the HTTP/1.1 upgrade.
func TestUpgradeEarlyDataAndCurl(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startWSUpstream(t)
		p := startProxy(t, wsConfig(tr, up.addr, ""))
		c := dialRaw(t, p.addr("http"))
		frame := maskedFrame(0x2, []byte("early"))
		c.send("GET /ws/early HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + string(frame))
		head, err := c.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101 ") {
			t.Fatalf("status line %q %v", head, err)
		}
		hdrs := readHeaderBlock(t, c)
		if !strings.Contains(strings.ToLower(hdrs), "upgrade: websocket") || !strings.Contains(strings.ToLower(hdrs), "connection: upgrade") {
			t.Fatalf("101 headers:\n%s", hdrs)
		}
		op, payload := readFrame(t, c.r)
		if op != 0x2 || string(payload) != "early" {
			t.Fatalf("echo of early data: op %d %q", op, payload)
		}
		// Half-close: the client's close frame then FIN; the upstream
		// answers with its close frame and closes; the proxy closes too.
		c.Write(maskedFrame(0x8, []byte{0x03, 0xe8}))
		c.Conn.(*net.TCPConn).CloseWrite()
		if op, _ := readFrame(t, c.r); op != 0x8 {
			t.Fatalf("want a close frame, got op %d", op)
		}
		c.expectClosed()

		// curl's HTTP/1.1 upgrade: 101 and the upstream's first message.
		out, _ := exec.Command("curl", "-s", "--http1.1", "-i", "-N", "--max-time", "3",
			"-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
			"-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "http://"+p.addr("http")+"/hello/x").Output()
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 101 ")) || !bytes.Contains(out, []byte("\x81\x05hello")) {
			t.Fatalf("curl upgrade output: %q", out)
		}
	})
}

func readHeaderBlock(t *testing.T, c *rawConn) string {
	t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading head: %v", err)
		}
		if l == "\r\n" {
			return b.String()
		}
		b.WriteString(l)
	}
}

// maskedFrame is one client WebSocket frame (RFC 6455 §5.2), FIN set.
func maskedFrame(op byte, p []byte) []byte {
	f := []byte{0x80 | op}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	case len(p) < 1<<16:
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
	}
	key := [4]byte{1, 2, 3, 4}
	f = append(f, key[:]...)
	for i, c := range p {
		f = append(f, c^key[i%4])
	}
	return f
}

// readFrame reads one unmasked server frame.
func readFrame(t *testing.T, r io.Reader) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		io.ReadFull(r, x[:])
		n = int(x[0])<<8 | int(x[1])
	case 127:
		var x [8]byte
		io.ReadFull(r, x[:])
		n = int(x[4])<<24 | int(x[5])<<16 | int(x[6])<<8 | int(x[7])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("frame payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

var _ = errors.New

// Upgrades go to HTTP/1.1 upstreams only: an HTTP/2 cluster gets 501.
func TestUpgradeToHTTP2ClusterRefused(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		cfg := wsConfig(tr, up.addr, "")
		cfg = cfg[:strings.Index(cfg, "clusters:")] + cluster2(up.addr)
		p := startProxy(t, cfg)
		c := dialRaw(t, p.addr("http"))
		c.send("GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		if resp, body := c.readResponse("GET"); resp.StatusCode != 501 {
			t.Fatalf("upgrade to an h2 cluster: %d %q", resp.StatusCode, body)
		}
	})
}

// scriptedUpstream answers every connection with reply once it has read a
// request head, then echoes what follows.
func scriptedUpstream(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var head []byte
				buf := make([]byte, 1)
				for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
					if _, err := c.Read(buf); err != nil {
						return
					}
					head = append(head, buf[0])
				}
				io.WriteString(c, reply)
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// What the upstream answers an upgrade decides: 101 with Upgrade opens the
// tunnel (bytes right behind it included, a 100 before it relayed as
// interim), a 101 without Upgrade is a protocol error (502).
func TestUpgradeUpstreamAnswers(t *testing.T) {
	const req = "GET /ws/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	cases := []struct {
		name, reply string
		want        []string // status lines the client sees, in order
		tunnel      bool
	}{
		{"101 and bytes at once", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nserver-first", []string{"HTTP/1.1 101 "}, true},
		{"100 then 101", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nserver-first", []string{"HTTP/1.1 100 ", "HTTP/1.1 101 "}, true},
		{"101 without Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", []string{"HTTP/1.1 502 "}, false},
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				p := startProxy(t, wsConfig(tr, scriptedUpstream(t, tc.reply), ""))
				c := dialRaw(t, p.addr("http"))
				c.send(req)
				for _, want := range tc.want {
					line, err := c.r.ReadString('\n')
					if err != nil || !strings.HasPrefix(line, want) {
						t.Fatalf("got %q %v, want %q", line, err, want)
					}
					readHeaderBlock(t, c)
				}
				if !tc.tunnel {
					return
				}
				buf := make([]byte, len("server-first"))
				if _, err := io.ReadFull(c.r, buf); err != nil || string(buf) != "server-first" {
					t.Fatalf("bytes behind the 101: %q %v", buf, err)
				}
				c.send("echo me")
				buf = make([]byte, len("echo me"))
				if _, err := io.ReadFull(c.r, buf); err != nil || string(buf) != "echo me" {
					t.Fatalf("tunnel echo: %q %v", buf, err)
				}
			})
		}
	})
}
