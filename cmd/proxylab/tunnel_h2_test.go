package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/http2/h2test"
)

// tunH2Client is a raw HTTP/2 client connection (h2test) for
// CONNECT and extended CONNECT streams, with flow control both ways: it
// returns window only as the application reads, so the proxy must respect
// it, and never sends beyond the proxy's windows.
type tunH2Client struct {
	t   *testing.T
	c   net.Conn
	fr  *h2test.Conn // read by readLoop, written under wmu
	wmu sync.Mutex

	mu       sync.Mutex
	cond     *sync.Cond
	settings map[http2.SettingID]uint32
	gotSet   bool
	connWin  int64
	peerInit int64
	streams  map[uint32]*h2Stream
	nextID   uint32
	err      error
}

type h2Stream struct {
	cc      *tunH2Client
	id      uint32
	win     int64
	status  int
	fields  []http2.HeaderField
	buf     bytes.Buffer
	eof     bool
	rst     http2.ErrCode
	gotRst  bool
	gotHead bool
}

func dialTunH2(t *testing.T, addr string, tlsCfg *tls.Config) *tunH2Client {
	t.Helper()
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.Dial("tcp", addr, tlsCfg)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := &tunH2Client{t: t, c: c, fr: h2test.New(c), settings: map[http2.SettingID]uint32{},
		connWin: 65535, peerInit: 65535, streams: map[uint32]*h2Stream{}, nextID: 1}
	cc.fr.Timeout = -1 // readLoop lives as long as the connection
	cc.cond = sync.NewCond(&cc.mu)
	cc.fr.Preface()
	cc.fr.WriteSettings()
	go cc.readLoop()
	cc.mu.Lock()
	for !cc.gotSet && cc.err == nil {
		cc.cond.Wait()
	}
	cc.mu.Unlock()
	if cc.err != nil {
		t.Fatalf("h2 handshake: %v", cc.err)
	}
	return cc
}

func (cc *tunH2Client) readLoop() {
	for {
		f, err := cc.fr.ReadFrame()
		cc.mu.Lock()
		if err != nil {
			cc.err = err
			for _, st := range cc.streams {
				st.eof = true
			}
			cc.cond.Broadcast()
			cc.mu.Unlock()
			return
		}
		switch f.Type {
		case http2.FrameSettings:
			if !f.IsAck() {
				for i := range f.NumSettings() {
					s := f.Setting(i)
					cc.settings[s.ID] = s.Val
					if s.ID == http2.SettingInitialWindowSize {
						for _, st := range cc.streams {
							st.win += int64(s.Val) - cc.peerInit
						}
						cc.peerInit = int64(s.Val)
					}
				}
				cc.gotSet = true
				cc.write(func() { cc.fr.WriteSettingsAck() })
			}
		case http2.FrameWindowUpdate:
			if f.StreamID == 0 {
				cc.connWin += int64(f.Increment)
			} else if st := cc.streams[f.StreamID]; st != nil {
				st.win += int64(f.Increment)
			}
		case http2.FrameHeaders:
			if st := cc.streams[f.StreamID]; st != nil {
				st.status, _ = strconv.Atoi(f.Get(":status"))
				st.fields, st.gotHead = f.Fields, true
				st.eof = st.eof || f.StreamEnded()
			}
		case http2.FrameData:
			if st := cc.streams[f.StreamID]; st != nil {
				st.buf.Write(f.Data)
				st.eof = st.eof || f.StreamEnded()
			}
		case http2.FrameRSTStream:
			if st := cc.streams[f.StreamID]; st != nil {
				st.gotRst, st.rst, st.eof = true, f.ErrCode, true
			}
		case http2.FramePing:
			if !f.IsAck() {
				cc.write(func() { cc.fr.WritePing(true, f.PingData) })
			}
		case http2.FrameGoAway:
			cc.err = fmt.Errorf("GOAWAY %v", f.ErrCode)
		}
		cc.cond.Broadcast()
		cc.mu.Unlock()
	}
}

func (cc *tunH2Client) write(f func()) {
	cc.wmu.Lock()
	f()
	cc.wmu.Unlock()
}

// open sends HEADERS (without END_STREAM) and waits for the response head.
func (cc *tunH2Client) open(fields ...string) *h2Stream {
	cc.mu.Lock()
	st := &h2Stream{cc: cc, id: cc.nextID, win: cc.peerInit}
	cc.nextID += 2
	cc.streams[st.id] = st
	cc.mu.Unlock()
	cc.write(func() {
		cc.fr.WriteHeaders(http2.HeadersParam{StreamID: st.id, BlockFragment: cc.fr.Block(h2test.Fields(fields...)), EndHeaders: true})
	})
	cc.mu.Lock()
	deadline := time.AfterFunc(10*time.Second, func() { cc.mu.Lock(); cc.err = fmt.Errorf("timeout"); cc.cond.Broadcast(); cc.mu.Unlock() })
	defer deadline.Stop()
	for !st.gotHead && !st.gotRst && cc.err == nil {
		cc.cond.Wait()
	}
	cc.mu.Unlock()
	return st
}

func (st *h2Stream) header(name string) string {
	for _, f := range st.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Write sends DATA within the peer's windows.
func (st *h2Stream) Write(p []byte) (int, error) {
	cc, n := st.cc, 0
	for len(p) > 0 {
		cc.mu.Lock()
		for (cc.connWin <= 0 || st.win <= 0) && cc.err == nil && !st.gotRst {
			cc.cond.Wait()
		}
		if cc.err != nil || st.gotRst {
			cc.mu.Unlock()
			return n, fmt.Errorf("h2 stream: %v rst=%v", cc.err, st.rst)
		}
		k := int(min(int64(len(p)), cc.connWin, st.win, 16384))
		cc.connWin -= int64(k)
		st.win -= int64(k)
		cc.mu.Unlock()
		cc.write(func() { cc.fr.WriteData(st.id, false, p[:k]) })
		p, n = p[k:], n+k
	}
	return n, nil
}

// Read returns DATA and gives the window back as it is consumed.
func (st *h2Stream) Read(p []byte) (int, error) {
	cc := st.cc
	cc.mu.Lock()
	for st.buf.Len() == 0 && !st.eof {
		cc.cond.Wait()
	}
	n, _ := st.buf.Read(p)
	eof := st.eof && st.buf.Len() == 0
	cc.mu.Unlock()
	if n > 0 {
		cc.write(func() {
			cc.fr.WriteWindowUpdate(0, uint32(n))
			cc.fr.WriteWindowUpdate(st.id, uint32(n))
		})
		return n, nil
	}
	if eof {
		if st.gotRst {
			return 0, fmt.Errorf("RST_STREAM %v", st.rst)
		}
		return 0, io.EOF
	}
	return 0, nil
}

// Close half-closes: an empty DATA frame with END_STREAM.
func (st *h2Stream) Close() error {
	st.cc.write(func() { st.cc.fr.WriteData(st.id, true, nil) })
	return nil
}

// rfc8441 is an http.RoundTripper turning coder/websocket's HTTP/1.1
// handshake into an RFC 8441 extended CONNECT on h2 (no Sec-WebSocket-Key
// is sent, as the RFC says), so a real WebSocket library runs over it.
type rfc8441 struct {
	cc   *tunH2Client
	resp chan []http2.HeaderField
}

func (r rfc8441) RoundTrip(req *http.Request) (*http.Response, error) {
	st := r.cc.open(":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", req.URL.RequestURI(),
		":authority", req.Host, "sec-websocket-version", "13")
	r.resp <- st.fields
	if st.status != 200 {
		return &http.Response{StatusCode: st.status, Body: io.NopCloser(st), Request: req}, nil
	}
	h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	hdr := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Accept": {base64.StdEncoding.EncodeToString(h[:])}}
	return &http.Response{StatusCode: 101, Header: hdr, Body: st, Request: req}, nil
}

func h2TunnelConfig(tr, up, fwd string, pk *pki, upgrades string) string {
	return fmt.Sprintf(`transport: %s
listeners:
  - name: h2c
    address: 127.0.0.1:0
    http_proxy: {%s}
  - name: tls
    address: 127.0.0.2:0
    tls:
      certificates: [{cert_file: %q, key_file: %q}]
      alpn: [h2, http/1.1]
    http_proxy: {%s}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /nows/, cluster: up, upgrade_configs: [{upgrade_type: websocket, enabled: false}]}
      - {connect_matcher: {}, headers: [{name: x-mode, exact: forward}], cluster: fwd}
      - {connect_matcher: {}, connect: {allow: ["127.0.0.1:*"]}}
      - {path: /direct, direct_response: {status: 200, body: hi}}
      - {prefix: /, cluster: up}
clusters:
  - name: up
    connect_timeout: 1s
    hosts: [{address: %q}]
  - name: fwd
    hosts: [{address: %q}]
`, tr, upgrades, pk.file("server.pem"), pk.file("server-key.pem"), upgrades, up, fwd)
}

// forEachH2 runs f over h2c and TLS on every transport.
func forEachH2(t *testing.T, upgrades string, f func(t *testing.T, p *proc, dial func() *tunH2Client, up *wsUpstream)) {
	pk := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startWSUpstream(t)
		p := startProxy(t, h2TunnelConfig(tr, up.addr, connectUpstream(t), pk, upgrades))
		for _, mode := range []string{"h2c", "tls"} {
			t.Run(mode, func(t *testing.T) {
				dial := func() *tunH2Client {
					if mode == "h2c" {
						return dialTunH2(t, p.addr("h2c"), nil)
					}
					return dialTunH2(t, p.addr("tls"), &tls.Config{RootCAs: pk.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
				}
				f(t, p, dial, up)
			})
		}
	})
}

func TestWebSocketHTTP2(t *testing.T) {
	forEachH2(t, "upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: CONNECT}]", func(t *testing.T, p *proc, dial func() *tunH2Client, up *wsUpstream) {
		cc := dial()
		if v, ok := cc.settings[http2.SettingEnableConnectProtocol]; !ok || v != 1 {
			t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL not advertised: %v", cc.settings)
		}
		rt := rfc8441{cc: cc, resp: make(chan []http2.HeaderField, 1)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws://"+p.addr("h2c")+"/ws/h2", &websocket.DialOptions{HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatalf("dial: %v %v\n%s", err, resp, p.logs())
		}
		for _, f := range <-rt.resp {
			if f.Name == "sec-websocket-accept" || f.Name == "upgrade" || f.Name == "connection" {
				t.Fatalf("h2 response carries %s", f.Name)
			}
		}
		echoSizes(t, c, up)
		seen := up.requests()
		if want := `/ws/h2 connection="Upgrade" upgrade="websocket" key=true`; seen[len(seen)-1] != want {
			t.Fatalf("upstream saw %s, want %s", seen[len(seen)-1], want)
		}

		// Disabled on the route: 403, on the same connection.
		st := cc.open(":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/nows/x", ":authority", "x")
		if st.status != 403 {
			t.Fatalf("extended CONNECT on a disabled route: %d rst=%v", st.status, st.rst)
		}
		// A response of the proxy's own is an ordinary response, not a tunnel.
		st = cc.open(":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/direct", ":authority", "x")
		if body, _ := io.ReadAll(st); st.status != 200 || st.header("content-length") != "2" || string(body) != "hi" {
			t.Fatalf("extended CONNECT to a direct response: %d %v %q", st.status, st.fields, body)
		}
		// Malformed shapes are stream errors.
		for _, fields := range [][]string{
			{":method", "CONNECT", ":protocol", "websocket", ":authority", "x"},               // no :scheme/:path
			{":method", "CONNECT", ":scheme", "http", ":path", "/", ":authority", "x:1"},      // plain with :path
			{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/"}, // no :authority
		} {
			if st := cc.open(fields...); !st.gotRst || st.rst != http2.ErrCodeProtocol {
				t.Errorf("%v: status %d rst %v, want PROTOCOL_ERROR", fields, st.status, st.rst)
			}
		}
	})
}

func TestConnectHTTP2(t *testing.T) {
	forEachH2(t, "upgrade_configs: [{upgrade_type: CONNECT}]", func(t *testing.T, p *proc, dial func() *tunH2Client, up *wsUpstream) {
		echo := tcpEcho(t)
		cc := dial()
		if _, ok := cc.settings[http2.SettingEnableConnectProtocol]; ok {
			t.Fatalf("extended CONNECT advertised without a WebSocket upgrade: %v", cc.settings)
		}
		st := cc.open(":method", "CONNECT", ":authority", echo)
		if st.status != 200 || st.header("content-length") != "" {
			t.Fatalf("CONNECT: %d %v\n%s", st.status, st.fields, p.logs())
		}
		big := make([]byte, 1<<20)
		rand.Read(big)
		go func() { st.Write(big); st.Close() }()
		got, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(got, append(big, "bye"...)) {
			t.Fatalf("tunnel: %v, %d bytes", err, len(got))
		}
		for _, tc := range []struct {
			authority string
			status    int
		}{{"127.0.0.2:1", 403}, {closedPort(t), 503}, {"no-port", 400}} {
			if st := cc.open(":method", "CONNECT", ":authority", tc.authority); st.status != tc.status {
				t.Errorf("CONNECT %s: %d, want %d", tc.authority, st.status, tc.status)
			}
		}
		// Forwarded to an HTTP/1.1 forward proxy (CONNECT is enabled).
		st = cc.open(":method", "CONNECT", ":authority", "example.test:443", "x-mode", "forward")
		if st.status != 200 || st.header("x-forwarded-to") != "example.test:443" {
			t.Fatalf("forwarded CONNECT: %d %v", st.status, st.fields)
		}
		st.Write([]byte("over h2"))
		buf := make([]byte, 7)
		if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "over h2" {
			t.Fatalf("forwarded tunnel: %q %v", buf, err)
		}
		// Extended CONNECT was not advertised: malformed.
		if st := cc.open(":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/ws/x", ":authority", "x"); st.rst != http2.ErrCodeProtocol {
			t.Fatalf("extended CONNECT without the setting: %d %v", st.status, st.rst)
		}
	})
}

// Many WebSockets at once: over HTTP/1.1 each on its own connection, over
// HTTP/2 all as streams of one connection (their flow control shares the
// connection window); every echo byte-exact.
func TestWebSocketConcurrent(t *testing.T) {
	forEachH2(t, "upgrade_configs: [{upgrade_type: websocket}]", func(t *testing.T, p *proc, dial func() *tunH2Client, up *wsUpstream) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cc := dial()
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				opts := &websocket.DialOptions{}
				if i%2 == 1 { // half over HTTP/2, sharing cc
					opts.HTTPClient = &http.Client{Transport: rfc8441{cc: cc, resp: make(chan []http2.HeaderField, 1)}}
				}
				c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws/%d", p.addr("h2c"), i), opts)
				if err != nil {
					errs <- fmt.Errorf("dial %d: %w", i, err)
					return
				}
				defer c.CloseNow()
				c.SetReadLimit(1 << 20)
				for n := 1; n <= 200<<10; n = n*3 + 7 {
					msg := make([]byte, n)
					rand.Read(msg)
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						errs <- fmt.Errorf("write %d/%d: %w", i, n, err)
						return
					}
					_, got, err := c.Read(ctx)
					if err != nil || !bytes.Equal(got, msg) {
						errs <- fmt.Errorf("echo %d/%d: %v (%d bytes)", i, n, err, len(got))
						return
					}
				}
				if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
					errs <- fmt.Errorf("close %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
