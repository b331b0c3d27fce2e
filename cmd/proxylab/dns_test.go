package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// dnsServer is a minimal authoritative DNS server on loopback UDP: it
// answers A queries for the names it holds (RFC 1035 §4), nothing else.
type dnsServer struct {
	conn *net.UDPConn
	mu   sync.Mutex
	a    map[string][]net.IP
}

func startDNS(t *testing.T) *dnsServer {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{conn: c, a: map[string][]net.IP{}}
	t.Cleanup(func() { c.Close() })
	go d.serve()
	return d
}

func (d *dnsServer) set(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[name] = nil
	for _, ip := range ips {
		d.a[name] = append(d.a[name], net.ParseIP(ip).To4())
	}
}

func (d *dnsServer) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// Question: labels, then type and class.
		i, labels := 12, []string{}
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			labels = append(labels, string(q[i+1:i+1+l]))
			i += 1 + l
		}
		if i+5 > len(q) {
			continue
		}
		qtype := binary.BigEndian.Uint16(q[i+1:])
		question := q[12 : i+5]
		name := strings.ToLower(strings.Join(labels, "."))
		d.mu.Lock()
		ips := d.a[name]
		d.mu.Unlock()
		var answers []net.IP
		if qtype == 1 {
			answers = ips
		}
		resp := make([]byte, 12, 512)
		copy(resp, q[:2])                            // ID
		binary.BigEndian.PutUint16(resp[2:], 0x8180) // response, recursion available, no error
		binary.BigEndian.PutUint16(resp[4:], 1)      // one question
		binary.BigEndian.PutUint16(resp[6:], uint16(len(answers)))
		resp = append(resp, question...)
		for _, ip := range answers {
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4) // name pointer, A, IN, TTL 1, 4 bytes
			resp = append(resp, ip...)
		}
		d.conn.WriteToUDP(resp, from)
	}
}

// TestStrictDNSCluster: hosts follow DNS; a host that leaves stops getting
// new requests while the one it is serving completes.
func TestStrictDNSCluster(t *testing.T) {
	dns := startDNS(t)
	// Two upstreams on the same port, on 127.0.0.2 and 127.0.0.3.
	release := make(chan struct{})
	var lnA, lnB net.Listener
	var err error
	for tries := 0; tries < 20; tries++ {
		if lnA, err = net.Listen("tcp", "127.0.0.2:0"); err != nil {
			t.Fatal(err)
		}
		port := lnA.Addr().(*net.TCPAddr).Port
		if lnB, err = net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", port)); err == nil {
			break
		}
		lnA.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	port := lnA.Addr().(*net.TCPAddr).Port
	serve := func(ln net.Listener, name string) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			io.WriteString(w, name)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	serve(lnA, "A")
	serve(lnB, "B")
	forEachTransport(t, func(t *testing.T, tr string) {
		dns.set("svc.test", "127.0.0.2")
		release = make(chan struct{})
		cfg := fmt.Sprintf(`transport: %s
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: svc}]}
clusters:
  - name: svc
    type: strict_dns
    dns_refresh_rate: 100ms
    dns_resolver: %q
    hosts: [{address: "svc.test:%d"}]
`, tr, dns.conn.LocalAddr().String(), port)
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr()}
		get := func(path string) string {
			code, body := p.get(path)
			return fmt.Sprintf("%d %s", code, body)
		}
		if got := get("/"); got != "200 A" {
			t.Fatalf("before the change: %q", got)
		}
		slow := make(chan string, 1)
		go func() { slow <- get("/slow") }() // in flight on A across the change
		time.Sleep(100 * time.Millisecond)
		dns.set("svc.test", "127.0.0.3")
		deadline := time.Now().Add(3 * time.Second)
		for get("/") != "200 B" {
			if time.Now().After(deadline) {
				t.Fatalf("DNS change not followed:\n%s", mustClusters(a))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if c := mustClusters(a); strings.Contains(c, "127.0.0.2") || !strings.Contains(c, "127.0.0.3:") {
			t.Fatalf("/clusters after the change:\n%s", c)
		}
		close(release)
		if got := <-slow; got != "200 A" {
			t.Fatalf("the request in flight on the removed host: %q", got)
		}
		// Both addresses: both hosts used.
		dns.set("svc.test", "127.0.0.2", "127.0.0.3")
		deadline = time.Now().Add(3 * time.Second)
		seen := map[string]bool{}
		for len(seen) < 2 && time.Now().Before(deadline) {
			seen[get("/")] = true
			time.Sleep(10 * time.Millisecond)
		}
		if !seen["200 A"] || !seen["200 B"] {
			t.Fatalf("two A records: saw %v", seen)
		}
	})
}
