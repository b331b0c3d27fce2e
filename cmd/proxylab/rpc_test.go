package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
)

// rpcPeer is a test peer speaking one codec on a real socket: it reads
// frames with the codec and writes frames built per the wire format.
type rpcPeer struct {
	codec xprotocol.Codec
	c     net.Conn
	r     *bufio.Reader
	buf   []byte
	wmu   sync.Mutex
}

func newPeer(codec xprotocol.Codec, c net.Conn) *rpcPeer {
	return &rpcPeer{codec: codec, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (p *rpcPeer) write(frame []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.c.Write(frame)
	return err
}

// read returns the next frame (an owned copy).
func (p *rpcPeer) read() (xprotocol.Frame, error) {
	for {
		var f xprotocol.Frame
		n, err := p.codec.Decode(p.buf, &f)
		if err != nil {
			return f, err
		}
		if n > 0 {
			raw := append([]byte(nil), p.buf[:n]...)
			p.buf = p.buf[n:]
			p.codec.Decode(raw, &f)
			return f, nil
		}
		chunk := make([]byte, 32<<10)
		m, err := p.r.Read(chunk)
		if m > 0 {
			p.buf = append(p.buf, chunk[:m]...)
			continue
		}
		if err != nil {
			return f, err
		}
	}
}

// rpcServer answers every request after the delay its "delay-ms" header
// (bolt) or argument asks, so answers come back out of order; "close"
// makes it drop the connection instead. Responses carry "name:service/
// method/content".
type rpcServer struct {
	name     string
	codec    xprotocol.Codec
	addr     string
	requests atomic.Int64
	conns    atomic.Int64
}

func startRPCServer(t *testing.T, name string, codec xprotocol.Codec) *rpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rpcServer{name: name, codec: codec, addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(newPeer(codec, c))
		}
	}()
	return s
}

func (s *rpcServer) serve(p *rpcPeer) {
	defer p.c.Close()
	for {
		f, err := p.read()
		if err != nil {
			return
		}
		switch f.Kind {
		case xprotocol.Heartbeat:
			p.write(s.codec.AppendHeartbeatReply(nil, &f))
			continue
		case xprotocol.Oneway:
			s.requests.Add(1)
			continue
		case xprotocol.Request:
		default:
			continue
		}
		s.requests.Add(1)
		content := string(f.Headers.Get("content"))
		if content == "close" || string(f.Headers.Get(xprotocol.FieldMethod)) == "close" {
			return
		}
		delay := time.Duration(f.ID*7) % 20 // dubbo: the proxy passes no attachments to read
		if v := f.Headers.Get("delay-ms"); v != nil {
			fmt.Sscan(string(v), &delay)
		}
		go func(f xprotocol.Frame) {
			time.Sleep(delay * time.Millisecond)
			body := fmt.Sprintf("%s:%s/%s/%s", s.name, f.Headers.Get(xprotocol.FieldService), f.Headers.Get(xprotocol.FieldMethod), content)
			p.write(rpcResponse(s.codec, f.ID, body))
		}(f)
	}
}

func rpcResponse(codec xprotocol.Codec, id uint64, body string) []byte {
	if codec.Name() == bolt.Name {
		return bolt.AppendResponse(nil, uint32(id), bolt.StatusSuccess, "", []byte(body))
	}
	e := hessian.NewEncoder()
	e.Encode(int32(1)) // RESPONSE_VALUE
	e.Encode(body)
	return dubbo.AppendResponse(nil, id, dubbo.StatusOK, e.Buffer())
}

// rpcRequest builds a request frame; test parameters travel as bolt
// headers (for dubbo as attachments, which the codec does not parse: the
// test server then derives what it needs from the ID and method).
func rpcRequest(codec xprotocol.Codec, id uint64, service, method string, kv map[string]string) []byte {
	if codec.Name() == bolt.Name {
		hs := []bolt.Header{{Key: "service", Value: service}, {Key: "sofa_head_method_name", Value: method}}
		for k, v := range kv {
			hs = append(hs, bolt.Header{Key: k, Value: v})
		}
		return bolt.AppendRequest(nil, false, uint32(id), false, 3*time.Second, "com.alipay.sofa.rpc.core.request.SofaRequest", hs, []byte("payload"))
	}
	e := hessian.NewEncoder()
	for _, v := range []any{"2.0.2", service, "1.0.0", method, "Ljava/lang/String;", "payload"} {
		e.Encode(v)
	}
	att := map[any]any{}
	for k, v := range kv {
		att[k] = v
	}
	e.Encode(att)
	return dubbo.AppendRequest(nil, id, true, e.Buffer())
}

// responseBody is the text a test server put in a response.
func responseBody(codec xprotocol.Codec, f xprotocol.Frame) string {
	if codec.Name() == bolt.Name {
		return string(f.Raw[len(f.Raw)-int(uint32(f.Raw[16])<<24|uint32(f.Raw[17])<<16|uint32(f.Raw[18])<<8|uint32(f.Raw[19])):])
	}
	d := hessian.NewDecoder(f.Raw[16:])
	d.Decode()
	v, _ := d.Decode()
	s, _ := v.(string)
	return s
}

func rpcConfig(tr, codec, upA, upB string) string {
	return fmt.Sprintf(`transport: %s
listeners:
  - name: rpc
    address: 127.0.0.1:0
    http_proxy: {}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, headers: [{name: service, exact: "svc.B"}], cluster: b}
      - {prefix: /svc.A/, cluster: a}
clusters:
  - {name: a, protocol: %s, connect_timeout: 1s, hosts: [{address: %q}]}
  - {name: b, protocol: %s, connect_timeout: 1s, hosts: [{address: %q}]}
`, tr, codec, upA, codec, upB)
}

func TestRPCThroughProxy(t *testing.T) {
	for _, codec := range []xprotocol.Codec{bolt.Codec{}, dubbo.Codec{}} {
		t.Run(codec.Name(), func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, tr string) {
				a, b := startRPCServer(t, "A", codec), startRPCServer(t, "B", codec)
				p := startProxy(t, rpcConfig(tr, codec.Name(), a.addr, b.addr))
				c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				peer := newPeer(codec, c)

				t.Run("many in flight, answered out of order, routed by service", func(t *testing.T) {
					const n = 200
					var wg sync.WaitGroup
					for i := range n {
						svc := "svc.A"
						if i%2 == 1 {
							svc = "svc.B"
						}
						kv := map[string]string{"content": fmt.Sprint(i), "delay-ms": fmt.Sprint((n - i) % 20)}
						wg.Add(1)
						go func() {
							defer wg.Done()
							peer.write(rpcRequest(codec, uint64(1000+i), svc, "echo", kv))
						}()
					}
					wg.Wait()
					seen := map[uint64]bool{}
					for len(seen) < n {
						f, err := peer.read()
						if err != nil {
							t.Fatalf("after %d responses: %v", len(seen), err)
						}
						i := int(f.ID) - 1000
						if f.Kind != xprotocol.Response || i < 0 || i >= n || seen[f.ID] {
							t.Fatalf("unexpected %v id %d", f.Kind, f.ID)
						}
						seen[f.ID] = true
						want := "A:svc.A/echo/"
						if i%2 == 1 {
							want = "B:svc.B/echo/"
						}
						if codec.Name() == bolt.Name {
							want += fmt.Sprint(i)
						}
						if got := responseBody(codec, f); got != want || codec.HTTPStatus(&f) != 200 {
							t.Fatalf("id %d: %q status %d, want %q", f.ID, got, f.Status, want)
						}
					}
					if a.conns.Load() > 1 || b.conns.Load() > 1 {
						t.Errorf("upstream connections: %d and %d (want one each, multiplexed)", a.conns.Load(), b.conns.Load())
					}
				})

				t.Run("heartbeat answered by the proxy", func(t *testing.T) {
					peer.write(codec.AppendHeartbeat(nil, 77))
					f, err := peer.read()
					if err != nil || f.Kind != xprotocol.HeartbeatReply || f.ID != 77 {
						t.Fatalf("%v %v %d", err, f.Kind, f.ID)
					}
				})

				t.Run("no route is an error response with the request's ID", func(t *testing.T) {
					peer.write(rpcRequest(codec, 5, "svc.Nowhere", "m", nil))
					f, err := peer.read()
					if err != nil || f.Kind != xprotocol.Response || f.ID != 5 || codec.HTTPStatus(&f) != 404 {
						t.Fatalf("%v %v id=%d status=%d", err, f.Kind, f.ID, f.Status)
					}
				})

				{
					t.Run("upstream fails mid-request: error response, not a hang", func(t *testing.T) {
						peer.write(rpcRequest(codec, 6, "svc.A", "close", map[string]string{"content": "close"}))
						f, err := peer.read()
						if err != nil || f.Kind != xprotocol.Response || f.ID != 6 || codec.HTTPStatus(&f) != 502 {
							t.Fatalf("%v %v id=%d status=%d", err, f.Kind, f.ID, f.Status)
						}
						// The connection still serves.
						peer.write(rpcRequest(codec, 7, "svc.A", "m", map[string]string{"content": "again"}))
						want := "A:svc.A/m/"
						if codec.Name() == bolt.Name {
							want += "again"
						}
						if f, err := peer.read(); err != nil || f.ID != 7 || responseBody(codec, f) != want {
							t.Fatalf("after failure: %v %d", err, f.ID)
						}
					})
				}
			})
		})
	}
}

// TestRPCAutoDetectAlongsideHTTP: one listener serves HTTP/1.1, h2c and
// both RPC protocols, told apart by their first bytes.
func TestRPCAutoDetectAlongsideHTTP(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		boltUp := startRPCServer(t, "bolt", bolt.Codec{})
		dubboUp := startRPCServer(t, "dubbo", dubbo.Codec{})
		httpUp := startUpstream(t, httpHello())
		p := startProxy(t, fmt.Sprintf(`transport: %s
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /, headers: [{name: service, exact: "svc.bolt"}], cluster: bolt}
      - {prefix: /, headers: [{name: service, exact: "svc.dubbo"}], cluster: dubbo}
      - {prefix: /, cluster: web}
clusters:
  - {name: bolt, protocol: bolt, hosts: [{address: %q}]}
  - {name: dubbo, protocol: dubbo, hosts: [{address: %q}]}
  - {name: web, hosts: [{address: %q}]}
`, tr, boltUp.addr, dubboUp.addr, httpUp.addr))
		addr := p.addr("web")
		for _, codec := range []xprotocol.Codec{bolt.Codec{}, dubbo.Codec{}} {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			peer := newPeer(codec, c)
			peer.write(rpcRequest(codec, 1, "svc."+codec.Name(), "m", nil))
			f, err := peer.read()
			if err != nil || f.ID != 1 || !strings.HasPrefix(responseBody(codec, f), codec.Name()+":svc."+codec.Name()+"/m/") {
				t.Fatalf("%s: %v %q", codec.Name(), err, responseBody(codec, f))
			}
			c.Close()
		}
		for _, cl := range []*struct{ name string }{{"http1"}, {"h2c"}} {
			client := h1Client()
			if cl.name == "h2c" {
				client = h2cClient()
			}
			resp, err := client.Get("http://" + addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello" {
				t.Fatalf("%s: %q", cl.name, body)
			}
		}
	})
}

func httpHello() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
}

// TestRPCHeartbeatsAndHostileInput: the proxy probes a quiet upstream
// connection with heartbeats, and a client that breaks the framing is
// disconnected (counted) without disturbing anyone else.
func TestRPCHeartbeatsAndHostileInput(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		var heartbeats atomic.Int64
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					p := newPeer(bolt.Codec{}, c)
					defer c.Close()
					for {
						f, err := p.read()
						if err != nil {
							return
						}
						switch f.Kind {
						case xprotocol.Heartbeat:
							heartbeats.Add(1)
							p.write(bolt.Codec{}.AppendHeartbeatReply(nil, &f))
						case xprotocol.Request:
							p.write(rpcResponse(bolt.Codec{}, f.ID, "ok"))
						}
					}
				}()
			}
		}()
		p := startProxy(t, fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: rpc, address: "127.0.0.1:0", http_proxy: {codec: bolt}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, protocol: bolt, rpc_protocol_options: {heartbeat_interval: 100ms}, hosts: [{address: %q}]}
`, tr, ln.Addr().String()))
		c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		peer := newPeer(bolt.Codec{}, c)
		peer.write(rpcRequest(bolt.Codec{}, 1, "svc", "m", nil))
		if f, err := peer.read(); err != nil || f.ID != 1 {
			t.Fatalf("%v %d", err, f.ID)
		}
		waitFor(t, 3*time.Second, "heartbeats on the quiet upstream connection", func() bool { return heartbeats.Load() >= 2 })

		// A frame with an unknown command: the proxy drops this client.
		bad, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		bad.SetDeadline(time.Now().Add(5 * time.Second))
		bad.Write([]byte{1, 1, 0, 9, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		if _, err := bad.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client sending a bad frame was answered, not dropped")
		}
		_, metrics := adminClient{t: t, base: "http://" + p.adminAddr()}.do("GET", "/stats/prometheus")
		if !strings.Contains(metrics, `proxylab_rpc_events_total{codec="bolt",event="bad_frames",name="rpc",side="listener"} 1`) {
			t.Fatalf("bad frame not counted:\n%s", grepLines(metrics, "rpc_events"))
		}
		// The first client is unaffected.
		peer.write(rpcRequest(bolt.Codec{}, 2, "svc", "m", nil))
		if f, err := peer.read(); err != nil || f.ID != 2 {
			t.Fatalf("after another client's bad frame: %v %d", err, f.ID)
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
