package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
)

// filterConfig is a one-listener http_proxy ("http") with the given
// http_filters and routes (YAML list items under the "all" virtual host),
// cluster "up" (protocol proto) and an admin endpoint with token "t".
func filterConfig(tr, filters, routes, proto, upstream string) string {
	return fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0", token: t}
listeners:
  - name: http
    address: 127.0.0.1:0
    http_proxy:
      http_filters:
%s
routes:
  - name: all
    domains: ["*"]
    routes:
%s
clusters:
  - {name: up, protocol: %s, connect_timeout: 1s, hosts: [{address: %q}]}
`, tr, indent(filters, 8), indent(routes, 6), proto, upstream)
}

// adminMetric reads one sample of a proxylab metric at /stats/prometheus.
func adminMetric(t *testing.T, p *proc, name string, labels map[string]string) float64 {
	t.Helper()
	a := adminClient{t: t, base: "http://" + p.adminAddr(), token: "t"}
	return value(t, a.scrape(), name, labels)
}

const rbacHTTPFilter = `- name: rbac
  typed_config:
    rules:
      action: ALLOW
      policies:
        public:
          permissions: [{url_path: {path: {prefix: /public/}}}]
          principals: [{any: true}]
        admins:
          permissions: [{and_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}, {not_rule: {url_path: {path: {prefix: /public/}}}}]}}]
          principals: [{and_ids: {ids: [{header: {name: x-role, string_match: {exact: admin}}}, {source_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]}}]
        grpc-unary:
          permissions: [{url_path: {path: {exact: /grpc.testing.TestService/UnaryCall}}}]
          principals: [{any: true}]
    shadow_rules:
      action: DENY
      policies:
        debug:
          permissions: [{header: {name: x-debug, present_match: true}}]
          principals: [{any: true}]`

const rbacRoutes = `- {prefix: /open/, cluster: up, typed_per_filter_config: {rbac: {disabled: true}}}
- prefix: /locked/
  cluster: up
  typed_per_filter_config:
    rbac: {rbac: {rules: {action: DENY, policies: {all: {permissions: [{any: true}], principals: [{any: true}]}}}}}
- {prefix: /, cluster: up}`

// TestRBACFilter: the rbac filter over HTTP/1.1 and HTTP/2 on every
// transport: policies by path, method, header and source address, route
// overrides (disabled, rules replaced), shadow rules only counted, the
// counters at the admin endpoint.
func TestRBACFilter(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startH2CUpstream(t, http.HandlerFunc(protoEcho))
		p := startProxy(t, filterConfig(tr, rbacHTTPFilter, rbacRoutes, "http1", up.addr))
		base := "http://" + p.addr("http")
		cases := []struct {
			method, path string
			hdrs         []string
			want         int
		}{
			{"GET", "/public/a", nil, 200},
			{"POST", "/public/a", []string{"x-debug", "1"}, 200},
			{"GET", "/private", nil, 403},
			{"GET", "/private", []string{"x-role", "admin"}, 200},
			{"POST", "/private", []string{"x-role", "admin"}, 403},
			{"GET", "/private", []string{"x-role", "Admin"}, 403},
			{"GET", "/private", []string{"x-role", "admin", "x-role", "other"}, 403},
			{"GET", "/open/anything", nil, 200},
			{"GET", "/locked/public/a", nil, 403},
			{"GET", "/public/../private", nil, 403}, // normalised by the client to /private
		}
		for _, proto := range []string{"h1", "h2c"} {
			c := h1Client()
			if proto == "h2c" {
				c = h2cClient()
			}
			for _, tc := range cases {
				req, _ := http.NewRequest(tc.method, base+tc.path, nil)
				for i := 0; i+1 < len(tc.hdrs); i += 2 {
					req.Header.Add(tc.hdrs[i], tc.hdrs[i+1])
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s %s: %v", proto, tc.method, tc.path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("%s %s %s %v: %d %q, want %d", proto, tc.method, tc.path, tc.hdrs, resp.StatusCode, b, tc.want)
				}
				if tc.want == 403 && string(b) != "RBAC: access denied" {
					t.Fatalf("%s: denial body %q", proto, b)
				}
				if tc.want == 200 && !strings.HasPrefix(string(b), tc.method+" ") {
					t.Fatalf("%s: upstream did not answer: %q", proto, b)
				}
			}
		}
		// Per listener: 2x (4 allowed by rules + 4 denied); /open skips the filter.
		lbl := map[string]string{"side": "listener", "name": "http"}
		if a, d := adminMetric(t, p, "proxylab_rbac_allowed_total", lbl), adminMetric(t, p, "proxylab_rbac_denied_total", lbl); a != 6 || d != 12 {
			t.Fatalf("rbac counters allowed %v denied %v, want 6 and 12", a, d)
		}
		if v := adminMetric(t, p, "proxylab_rbac_shadow_denied_total", lbl); v != 2 {
			t.Fatalf("shadow denied %v, want 2", v)
		}
	})
}

// TestRBACFilterGRPC: a denied gRPC call ends with PERMISSION_DENIED.
func TestRBACFilterGRPC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		_, addr := startGRPCServer(t)
		p := startProxy(t, filterConfig(tr, rbacHTTPFilter, "- {prefix: /, cluster: up}", "http2", addr))
		c := grpcClient(t, p.addr("http"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatalf("allowed call: %v", err)
		}
		_, err := c.EmptyCall(ctx, &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "RBAC: access denied") {
			t.Fatalf("denied call: %v", err)
		}
	})
}

// TestRBACFilterMTLS: principals by the client certificate's SPIFFE id.
func TestRBACFilterMTLS(t *testing.T) {
	pk := newPKI(t)
	admin, adminKey := pk.issue("admin-client", nil, []string{"spiffe://proxylab.test/admin"}, true, time.Now().Add(time.Hour))
	user, userKey := pk.issue("user-client", nil, []string{"spiffe://proxylab.test/user"}, true, time.Now().Add(time.Hour))
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(protoEcho))
		cfg := tlsListenerConfig(tr, pk, up.addr, fmt.Sprintf("client_auth: require\nclient_ca: %q", pk.file("cas.pem")))
		cfg = strings.Replace(cfg, "    http_proxy: {}\n", `    http_proxy:
      http_filters:
        - name: rbac
          typed_config:
            rules:
              policies:
                admin:
                  permissions: [{any: true}]
                  principals: [{authenticated: {principal_name: {exact: "spiffe://proxylab.test/admin"}}}]
`, 1)
		p := startProxy(t, cfg)
		for _, c := range []struct {
			cert, key string
			want      int
		}{{admin, adminKey, 200}, {user, userKey, 403}} {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				t.Fatal(err)
			}
			resp, body, err := tlsGet(t, p.addr("web"), &tls.Config{RootCAs: pk.pool, ServerName: "localhost", Certificates: []tls.Certificate{pair}}, "/x")
			if err != nil || resp.StatusCode != c.want {
				t.Fatalf("%s: %v %v %q, want %d", c.cert, err, resp, body, c.want)
			}
		}
	})
}

// TestRBACFilterBolt: the filter on bolt requests (path /service/method,
// headers the frame's fields): only svc.A's echo is allowed.
func TestRBACFilterBolt(t *testing.T) {
	codec := bolt.Codec{}
	forEachTransport(t, func(t *testing.T, tr string) {
		a, b := startRPCServer(t, "A", codec), startRPCServer(t, "B", codec)
		cfg := strings.Replace(rpcConfig(tr, codec.Name(), a.addr, b.addr), "    http_proxy: {}\n", `    http_proxy:
      http_filters:
        - name: rbac
          typed_config:
            rules:
              policies:
                a-only:
                  permissions: [{and_rules: {rules: [{url_path: {path: {prefix: /svc.A/}}}, {header: {name: method, string_match: {exact: echo}}}]}}]
                  principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]
`, 1)
		p := startProxy(t, cfg)
		c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		peer := newPeer(codec, c)
		for i, svc := range []string{"svc.A", "svc.B", "svc.A"} {
			if err := peer.write(rpcRequest(codec, uint64(10+i), svc, "echo", map[string]string{"content": "hi"})); err != nil {
				t.Fatal(err)
			}
			f, err := peer.read()
			if err != nil || f.Kind != xprotocol.Response || f.ID != uint64(10+i) {
				t.Fatalf("%s: %v %v id %d", svc, err, f.Kind, f.ID)
			}
			allowed := f.Status == bolt.StatusSuccess
			if allowed != (svc == "svc.A") {
				t.Fatalf("%s: status %d (http %d), body %q", svc, f.Status, codec.HTTPStatus(&f), responseBody(codec, f))
			}
		}
		if b.requests.Load() != 0 {
			t.Fatal("a denied request reached svc.B")
		}
	})
}

// TestRBACListenerFilterTCP: rbac as a listener filter in front of
// tcp_proxy: a connection from an address no policy allows is closed at
// accept (the upstream never sees it), an allowed one is proxied; counted.
func TestRBACListenerFilterTCP(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		var upConns atomic.Int64
		echo := rawUpstream(t, func(c net.Conn) {
			upConns.Add(1)
			io.Copy(c, c)
		})
		cfg := strings.Replace(tcpConfig(tr, echo), "    tcp_proxy: {cluster: up}\n", `    listener_filters:
      - name: rbac
        typed_config:
          rules:
            policies:
              second-loopback:
                permissions: [{not_rule: {destination_port: 1}}]
                principals: [{source_ip: {address_prefix: 127.0.0.2, prefix_len: 32}}]
    tcp_proxy: {cluster: up}
`, 1)
		cfg = strings.Replace(cfg, "drain_timeout: 5s\n", "drain_timeout: 5s\nadmin: {address: \"127.0.0.1:0\", token: t}\n", 1)
		p := startProxy(t, cfg)
		dialFrom := func(src string) net.Conn {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.Dial("tcp", p.addr("tcp"))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			return c
		}
		ok := dialFrom("127.0.0.2")
		defer ok.Close()
		io.WriteString(ok, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(ok, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("allowed connection: %q %v", buf, err)
		}
		denied := dialFrom("127.0.0.1")
		defer denied.Close()
		io.WriteString(denied, "ping")
		if n, err := denied.Read(buf); err == nil {
			t.Fatalf("denied connection read %d bytes", n)
		}
		if n := upConns.Load(); n != 1 {
			t.Fatalf("upstream saw %d connections, want 1", n)
		}
		lbl := map[string]string{"side": "listener", "name": "tcp"}
		if a, d := adminMetric(t, p, "proxylab_rbac_network_allowed_total", lbl), adminMetric(t, p, "proxylab_rbac_network_denied_total", lbl); a != 1 || d != 1 {
			t.Fatalf("counters allowed %v denied %v", a, d)
		}
	})
}

// TestRBACFilterReload: new rules take effect on reload (POST /reload); a
// rules block that does not validate is refused with its field path and
// the rules in force keep serving.
func TestRBACFilterReload(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(protoEcho))
	rules := func(action string) string {
		return "- name: rbac\n  typed_config:\n    rules:\n      action: " + action + "\n      policies:\n        p: {permissions: [{url_path: {path: {prefix: /private}}}], principals: [{any: true}]}"
	}
	p := startProxy(t, filterConfig("netpoll", rules("DENY"), "- {prefix: /, cluster: up}", "http1", up.addr))
	adm := adminClient{t: t, base: "http://" + p.adminAddr(), token: "t"}
	status := func(path string) int {
		resp, _ := doGet(t, h1Client(), "http://"+p.addr("http")+path)
		return resp.StatusCode
	}
	if status("/private") != 403 || status("/public") != 200 {
		t.Fatal("DENY rules not in force")
	}
	for _, tc := range []struct {
		action   string
		code     int
		private  int
		contains string
	}{
		{"ALLOW", 200, 200, ""},
		{"MAYBE", 400, 200, "listeners[0].http_proxy.http_filters[0].typed_config.rules.action: must be ALLOW or DENY"},
	} {
		if err := os.WriteFile(p.configPath(), []byte(filterConfig("netpoll", rules(tc.action), "- {prefix: /, cluster: up}", "http1", up.addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, body := adm.do("POST", "/reload")
		if code != tc.code || !strings.Contains(body, tc.contains) {
			t.Fatalf("%s: POST /reload: %d %s", tc.action, code, body)
		}
		if got := status("/private"); got != tc.private {
			t.Fatalf("%s: /private %d, want %d", tc.action, got, tc.private)
		}
		if got := status("/public"); got != 403 {
			t.Fatalf("%s: /public %d, want 403 (ALLOW only /private)", tc.action, got)
		}
	}
}
