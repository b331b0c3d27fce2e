package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/proxylab/proxylab/core/xds"
	"github.com/proxylab/proxylab/core/xds/xdstest"
)

// freePort is a loopback address no one listens on right now (for
// listeners a control plane names).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// named answers with its name and the protocol it saw.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.Proto)
	})
}

// body GETs url with c, "" on any failure.
func body(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// eventually polls f until it is true.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const xdsBase = `
admin:
  address: 127.0.0.1:0
`

type xdsScene struct {
	a, b, h2        *goUpstream
	web, secure     string
	certPEM, keyPEM []byte
	tlsClient       *http.Client
}

func newXDSScene(t *testing.T) *xdsScene {
	p := newPKI(t)
	certFile, keyFile := p.issue("xds-web", []string{"localhost", "127.0.0.1"}, nil, false, time.Now().Add(time.Hour))
	return &xdsScene{a: startUpstream(t, named("A")), b: startUpstream(t, named("B")), h2: startH2CUpstream(t, named("C")),
		web: freePort(t), secure: freePort(t), certPEM: mustRead(t, certFile), keyPEM: mustRead(t, keyFile),
		tlsClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}}
}

// snapshot is the scene's resources with cluster "web" on host and the
// route "/" to root (a cluster name).
func (s *xdsScene) snapshot(host, root string) map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  {xdstest.EDSCluster("web"), xdstest.StaticH2Cluster("h2", s.h2.addr)},
		resource.EndpointType: {xdstest.Endpoints("web", host)},
		resource.ListenerType: {xdstest.HTTPListener("web", s.web, "main"), xdstest.WithTLS(xdstest.HTTPListener("secure", s.secure, "main"), "web-cert")},
		resource.RouteType:    {xdstest.Routes("main", xdstest.Prefix("/h2", "h2"), xdstest.Prefix("/", root))},
		resource.SecretType:   {xdstest.CertSecret("web-cert", s.certPEM, s.keyPEM)},
	}
}

func TestXDSControlPlane(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		for _, variant := range []string{"sotw", "delta"} {
			t.Run(variant, func(t *testing.T) { testXDSControlPlane(t, tr, variant == "delta") })
		}
	})
}

func testXDSControlPlane(t *testing.T, tr string, delta bool) {
	cp := xdstest.New(t)
	s := newXDSScene(t)
	cp.Set(t, "n1", "v1", s.snapshot(s.a.addr, "web"))
	args := []string{"--transport", tr, "--xds", cp.Addr, "--node-id", "n1", "--xds-debounce", "5ms"}
	if delta {
		args = append(args, "--xds-delta")
	}
	p := startProxy(t, xdsBase, args...)

	// Listener, routes, clusters, endpoints and the secret arrive and serve,
	// over HTTP/1.1, h2c and TLS, to an HTTP/1.1 and an HTTP/2 upstream.
	web := "http://" + s.web
	eventually(t, "the xDS listener to serve", func() bool { return body(h1Client(), web+"/") == "A HTTP/1.1" })
	if got := body(h2cClient(), web+"/x"); got != "A HTTP/1.1" {
		t.Fatalf("h2c through the xDS listener: %q", got)
	}
	if got := body(h2cClient(), web+"/h2"); got != "C HTTP/2.0" {
		t.Fatalf("HTTP/2 cluster: %q", got)
	}
	eventually(t, "the TLS listener (SDS certificate)", func() bool { return body(s.tlsClient, "https://"+s.secure+"/") == "A HTTP/1.1" })
	for _, typ := range []string{xds.ClusterType, xds.EndpointType, xds.ListenerType, xds.RouteType, xds.SecretType} {
		cp.WaitACK(t, typ, "v1", 10*time.Second)
	}
	h2tls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tlsClient.Transport.(*http.Transport).TLSClientConfig.Clone(), ForceAttemptHTTP2: true}}
	resp, err := h2tls.Get("https://" + s.secure + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || string(b) != "C HTTP/2.0" {
		t.Fatalf("HTTP/2 over TLS (ALPN h2) through the SDS listener: %s %q", resp.Proto, b)
	}

	// A file reload (SIGHUP) keeps the control plane's resources: the
	// file is their base.
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload", func() bool { return strings.Contains(p.logs(), `msg="config reloaded"`) })
	if got := body(h1Client(), web+"/"); got != "A HTTP/1.1" {
		t.Fatalf("after a file reload: %q", got)
	}

	// An EDS change moves traffic within one push: once the proxy ACKs,
	// the very next request goes to the new host.
	cp.Set(t, "n1", "v2", s.snapshot(s.b.addr, "web"))
	cp.WaitFor(t, 10*time.Second, "ACK of EDS v2", func(r xdstest.Request) bool {
		return r.TypeURL == xds.EndpointType && r.Error == "" && r.Nonce != "" && (r.Delta || r.Version == "v2")
	})
	eventually(t, "EDS v2 applied", func() bool { return body(h1Client(), web+"/") == "B HTTP/1.1" })
	for i := 0; i < 5; i++ {
		if got := body(h1Client(), web+"/"); got != "B HTTP/1.1" {
			t.Fatalf("after the EDS push, request %d went to %q", i, got)
		}
	}

	// A route to a cluster never announced is NACKed with the resource and
	// field; the last good config keeps serving.
	cp.Set(t, "n1", "v3", s.snapshot(s.b.addr, "ghost"))
	nack := cp.WaitFor(t, 10*time.Second, "NACK of RDS v3", func(r xdstest.Request) bool { return r.TypeURL == xds.RouteType && r.Error != "" })
	if !strings.Contains(nack.Error, `RouteConfiguration "main"`) || !strings.Contains(nack.Error, `routes[1].cluster: unknown cluster "ghost"`) {
		t.Fatalf("NACK error_detail: %s", nack.Error)
	}
	if got := body(h1Client(), web+"/"); got != "B HTTP/1.1" {
		t.Fatalf("after the NACK: %q", got)
	}

	// The control plane dies: serving continues; it comes back with a new
	// version and the proxy catches up on the resumed stream.
	cp.Stop()
	for i := 0; i < 3; i++ {
		if got := body(h2cClient(), web+"/"); got != "B HTTP/1.1" {
			t.Fatalf("with the control plane down: %q", got)
		}
	}
	cp.Set(t, "n1", "v4", s.snapshot(s.a.addr, "web"))
	cp.Restart(t)
	eventually(t, "v4 after the control plane restart", func() bool { return body(h1Client(), web+"/") == "A HTTP/1.1" })

	// Metrics and the dump show the versions.
	code, stats := (adminClient{t: t, base: "http://" + p.adminAddr()}).do("GET", "/stats")
	if code != 200 || !strings.Contains(stats, "proxylab_xds_update_rejected_total") {
		t.Fatalf("/stats: %d\n%s", code, stats)
	}
	code, dump := (adminClient{t: t, base: "http://" + p.adminAddr()}).do("GET", "/config_dump")
	if code != 200 || !strings.Contains(dump, "dynamic_Listener") || !strings.Contains(dump, "name: web") || strings.Contains(dump, string(s.keyPEM[40:80])) {
		t.Fatalf("/config_dump: %d\n%s", code, dump)
	}
	if !delta && !strings.Contains(dump, "version: v4") {
		t.Fatalf("/config_dump lacks version v4:\n%s", dump)
	}

	// Removing the listeners drains them.
	cp.Set(t, "n1", "v5", map[resource.Type][]types.Resource{
		resource.ClusterType: {xdstest.EDSCluster("web")}, resource.EndpointType: {xdstest.Endpoints("web", s.a.addr)},
	})
	eventually(t, "the listener to go away", func() bool {
		c, err := net.DialTimeout("tcp", s.web, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if logs := p.logs(); !strings.Contains(logs, `msg="xds: update accepted" type=ClusterLoadAssignment`) ||
		!strings.Contains(logs, `msg="xds: update rejected" type=RouteConfiguration`) {
		t.Fatal("no log line per accepted and rejected update")
	}
	if strings.Contains(p.logs(), "panic") {
		t.Fatal("panic in the log")
	}
}
