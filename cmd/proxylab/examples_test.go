package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/docs/examples/tinyrpc"
)

// extendingLines returns the builtins.go lines docs/extending.md shows: the
// ```go blocks that start with "// cmd/proxylab/builtins.go", split into
// import paths and registration lines.
func extendingLines(t *testing.T) (imports, registers []string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/extending.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```go\n// cmd/proxylab/builtins.go\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		for _, line := range strings.Split(m[1], "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "":
			case strings.HasPrefix(line, "import "):
				imports = append(imports, strings.TrimPrefix(line, "import "))
			default:
				registers = append(registers, line)
			}
		}
	}
	if len(imports) < 4 || len(registers) < 4 {
		t.Fatalf("docs/extending.md: found imports %v and registrations %v, want one of each per example", imports, registers)
	}
	return imports, registers
}

// buildWithExamples builds proxylab with the lines docs/extending.md tells a
// reader to add to builtins.go, added (go build -overlay replaces the file
// for the build only).
func buildWithExamples(t *testing.T) string {
	t.Helper()
	imports, registers := extendingLines(t)
	src, err := os.ReadFile("builtins.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	// Codecs go before HTTP/1's line (it takes whatever no codec before it
	// claims), everything else at the end of the list.
	const anchor, codecAnchor = "\tregisterPlatformBuiltins()", "\tstream.Register(h1s.Codec{})"
	if !strings.Contains(s, "import (\n") || !strings.Contains(s, anchor) || !strings.Contains(s, codecAnchor) {
		t.Fatal("builtins.go changed shape: update buildWithExamples")
	}
	var codecs, others []string
	for _, r := range registers {
		if strings.HasPrefix(r, "stream.Register(") {
			codecs = append(codecs, r)
		} else {
			others = append(others, r)
		}
	}
	s = strings.Replace(s, "import (\n", "import (\n\t"+strings.Join(imports, "\n\t")+"\n", 1)
	s = strings.Replace(s, anchor, "\t"+strings.Join(others, "\n\t")+"\n"+anchor, 1)
	if len(codecs) > 0 {
		s = strings.Replace(s, codecAnchor, "\t"+strings.Join(codecs, "\n\t")+"\n"+codecAnchor, 1)
	}
	dir := t.TempDir()
	patched := filepath.Join(dir, "builtins.go")
	os.WriteFile(patched, []byte(s), 0o644)
	abs, _ := filepath.Abs("builtins.go")
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{abs: patched}})
	os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o644)
	bin := filepath.Join(dir, "proxylab-examples")
	if out, err := exec.Command("go", "build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building proxylab with the examples of docs/extending.md: %v\n%s\n%s", err, out, s)
	}
	return bin
}

// TestDocsExamples builds proxylab with the example plugins of
// docs/extending.md registered as the document says, and runs each end to
// end: the LB policy with its options, the transport, the crypto engine,
// the codec.
func TestDocsExamples(t *testing.T) {
	bin := buildWithExamples(t)
	t.Run("lbfirst", func(t *testing.T) { testExampleLBFirst(t, bin) })
	t.Run("conncount", func(t *testing.T) { testExampleConnCount(t, bin) })
	t.Run("tls13only", func(t *testing.T) { testExampleTLS13Only(t, bin) })
	t.Run("tinyrpc", func(t *testing.T) { testExampleTinyRPC(t, bin) })
	t.Run("addheader", func(t *testing.T) { testExampleAddHeader(t, bin) })
}

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testExampleLBFirst: lb: first sends everything to the first healthy host
// (or the one skip names); its options are validated with field paths.
func testExampleLBFirst(t *testing.T, bin string) {
	var ups []string
	for i := 0; i < 3; i++ {
		id := i
		ups = append(ups, startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream-%d", id)
		})).addr)
	}
	forEachTransport(t, func(t *testing.T, tr string) {
		dead := closedPort(t)
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /first, cluster: first}
      - {prefix: /skip, cluster: skip}
      - {prefix: /standby, cluster: standby}
clusters:
  - {name: first, lb: first, hosts: [{address: %[2]q}, {address: %[3]q}, {address: %[4]q}]}
  - {name: skip, lb: first, lb_options: {skip: 1}, hosts: [{address: %[2]q}, {address: %[3]q}, {address: %[4]q}]}
  - name: standby
    lb: first
    health_check: {type: tcp, interval: 100ms, timeout: 1s, unhealthy_threshold: 1}
    hosts: [{address: %[5]q}, {address: %[3]q}, {address: %[4]q}]
`, tr, ups[0], ups[1], ups[2], dead)
		p := startProxyBin(t, bin, cfg)
		base := "http://" + p.addr("web")
		for _, tc := range []struct{ path, want string }{{"/first", "upstream-0"}, {"/skip", "upstream-1"}} {
			for i := 0; i < 5; i++ {
				if code, body := httpGet(t, http.DefaultClient, base+tc.path); code != 200 || body != tc.want {
					t.Fatalf("%s: %d %q, want %s every time", tc.path, code, body, tc.want)
				}
			}
		}
		// The dead first host fails its check; the next healthy one takes over.
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := httpGet(t, http.DefaultClient, base+"/standby")
			if code == 200 && body == "upstream-1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/standby: %d %q; the first healthy host never took over", code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		if _, body := a.do("GET", "/clusters"); !strings.Contains(body, "skip::lb::first skip=1\n") {
			t.Errorf("/clusters lacks the policy's description:\n%s", body)
		}
	})
	bad := writeTemp(t, `listeners:
  - {name: l, address: "127.0.0.1:0", tcp_proxy: {cluster: c}}
clusters:
  - {name: c, lb: first, lb_options: {skip: -1, step: 2}, hosts: [{address: "127.0.0.1:1"}]}
  - {name: d, lb: first, lb_options: {skip: -1}, hosts: [{address: "127.0.0.1:1"}]}
`)
	out, err := exec.Command(bin, "validate", "-c", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "clusters[0].lb_options.step: unknown field (known: skip)") ||
		!strings.Contains(string(out), "clusters[1].lb_options.skip: must be >= 0, got -1") {
		t.Errorf("validate with bad lb_options for the example policy (%v):\n%s", err, out)
	}
	// The stock binary has no such policy: the one line is what adds it.
	if out, err := exec.Command(binPath, "validate", "-c", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), `unknown policy "first"`) {
		t.Errorf("the stock binary accepted lb: first (%v):\n%s", err, out)
	}
}

// testExampleConnCount: --transport conncount carries the traffic and counts
// the connections it accepted and dialled; its own options block
// (conncount.count_dials) takes effect and is validated.
func testExampleConnCount(t *testing.T, bin string) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for _, tc := range []struct {
		block     string
		wantDials bool
	}{{"", true}, {"conncount: {count_dials: false}\n", false}} {
		cfg := fmt.Sprintf(`admin: {address: "127.0.0.1:0"}
%slisteners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tc.block, up.addr)
		p := startProxyBin(t, bin, cfg, "--transport", "conncount")
		if !strings.Contains(p.logs(), "transport=conncount") {
			t.Fatalf("not running on conncount:\n%s", p.logs())
		}
		for i := 0; i < 3; i++ { // three client connections
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			if code, body := httpGet(t, c, "http://"+p.addr("web")+"/"); code != 200 || body != "ok" {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
		}
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		fams := a.scrape()
		lbl := map[string]string{"transport": "conncount"}
		if n := value(t, fams, "proxylab_transport_accepts_total", lbl); n != 3 {
			t.Errorf("%q: accepts counted %v, want 3", tc.block, n)
		}
		if n := value(t, fams, "proxylab_transport_dials_total", lbl); (n >= 1) != tc.wantDials {
			t.Errorf("%q: dials counted %v, want them counted: %v", tc.block, n, tc.wantDials)
		}
	}
	bad := writeTemp(t, `transport: conncount
conncount: {count_dials: maybe, label: x}
listeners:
  - {name: l, address: "127.0.0.1:0", tcp_proxy: {cluster: c}}
clusters:
  - {name: c, hosts: [{address: "127.0.0.1:1"}]}
`)
	out, err := exec.Command(bin, "validate", "-c", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "conncount.count_dials: expected a boolean (true/false), got \"maybe\"") ||
		!strings.Contains(string(out), "conncount.label: unknown field (known: count_dials)") {
		t.Errorf("validate with a bad conncount block (%v):\n%s", err, out)
	}
}

// testExampleTLS13Only: a listener on the tls13only engine refuses a TLS 1.2
// client that the same certificate on gotls accepts, and serves TLS 1.3.
func testExampleTLS13Only(t *testing.T, bin string) {
	dir := t.TempDir()
	if err := writeCerts(dir, []string{"localhost"}, "ecdsa", time.Hour); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %[1]s
listeners:
  - name: strict
    address: "127.0.0.1:0"
    tls: {engine: tls13only, certificates: [{cert_file: %[2]s/server.pem, key_file: %[2]s/server-key.pem}]}
    http_proxy: {}
  - name: stock
    address: "127.0.0.2:0"     # two listeners may not both say 127.0.0.1:0
    tls: {engine: gotls, certificates: [{cert_file: %[2]s/server.pem, key_file: %[2]s/server-key.pem}]}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %[3]q}]}
`, tr, dir, up.addr)
		p := startProxyBin(t, bin, cfg)
		client := func(maxVersion uint16) *http.Client {
			return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: maxVersion}}}
		}
		url := func(l string) string { return "https://" + p.addr(l) + "/" }
		if _, err := client(tls.VersionTLS12).Get(url("strict")); err == nil {
			t.Fatal("tls13only accepted a TLS 1.2 client")
		}
		if code, body := httpGet(t, client(tls.VersionTLS12), url("stock")); code != 200 || body != "secure" {
			t.Fatalf("gotls with TLS 1.2: %d %q", code, body)
		}
		resp, err := client(tls.VersionTLS13).Get(url("strict"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "secure" || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("tls13only with TLS 1.3: %d %q version %x", resp.StatusCode, body, resp.TLS.Version)
		}
	})
}

// tinyUpstream is a tinyrpc server: it answers each request with its body
// upper-cased (status ok) and heartbeats with replies.
func tinyUpstream(t *testing.T) string {
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
				codec := tinyrpc.Codec{}
				var in []byte
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					in = append(in, buf[:n]...)
					for {
						var f xprotocol.Frame
						used, err := codec.Decode(in, &f)
						if err != nil {
							return
						}
						if used == 0 {
							break
						}
						var out []byte
						switch f.Kind {
						case xprotocol.Request:
							route := len(f.Headers.Get(xprotocol.FieldService)) + 1 + len(f.Headers.Get(xprotocol.FieldMethod))
							body := f.Raw[14+route:]
							out = tinyrpc.AppendResponse(nil, uint32(f.ID), tinyrpc.StatusOK, []byte(strings.ToUpper(string(body))))
						case xprotocol.Heartbeat:
							out = codec.AppendHeartbeatReply(nil, &f)
						}
						c.Write(out)
						in = in[used:]
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// testExampleTinyRPC: an http_proxy port with codec auto detects tinyrpc by
// its magic, routes it by service to a tinyrpc cluster and answers under the
// client's IDs; a request with no route gets tinyrpc's own 404 frame.
func testExampleTinyRPC(t *testing.T, bin string) {
	up := tinyUpstream(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		cfg := fmt.Sprintf(`transport: %s
listeners:
  - {name: rpc, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /echo/, cluster: echo}]}
clusters:
  - {name: echo, protocol: tinyrpc, hosts: [{address: %q}]}
`, tr, up)
		p := startProxyBin(t, bin, cfg)
		c, err := net.Dial("tcp", p.addr("rpc"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		var req []byte
		req = tinyrpc.AppendRequest(req, 5, "echo", "upper", []byte("hello"), false)
		req = tinyrpc.AppendRequest(req, 6, "echo", "upper", []byte("world"), false)
		req = tinyrpc.AppendRequest(req, 7, "nope", "x", nil, false)
		req = tinyrpc.Codec{}.AppendHeartbeat(req, 8)
		c.Write(req)
		got := map[uint64]string{}
		codec := tinyrpc.Codec{}
		var in []byte
		buf := make([]byte, 4096)
		for len(got) < 4 {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("answers so far %v: %v", got, err)
			}
			in = append(in, buf[:n]...)
			for {
				var f xprotocol.Frame
				used, err := codec.Decode(in, &f)
				if err != nil {
					t.Fatal(err)
				}
				if used == 0 {
					break
				}
				got[f.ID] = fmt.Sprintf("%v %d %s", f.Kind, codec.HTTPStatus(&f), f.Raw[14:])
				in = in[used:]
			}
		}
		for id, want := range map[uint64]string{5: "response 200 HELLO", 6: "response 200 WORLD", 8: "heartbeat-reply 200 "} {
			if got[id] != want {
				t.Errorf("ID %d: %q, want %q", id, got[id], want)
			}
		}
		if !strings.HasPrefix(got[7], "response 404 ") {
			t.Errorf("no route: %q, want tinyrpc's not-found frame", got[7])
		}
	})
}
