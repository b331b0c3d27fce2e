package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A sidecar test bed: a network namespace (the "pod") joined to the test's
// namespace by a veth pair, pod side .2, host side .1 of 10.77.<n>.0/24,
// with scripts/intercept.sh's rules inside, and proxylab running in it with
// the proxy's group (1337) the rules exempt.
type podNet struct {
	t          *testing.T
	name       string
	host, pod  string // IPs
	nsPath     string
	scriptPath string
}

func runCmd(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newPod builds the namespace; it is removed when the test ends.
func newPod(t *testing.T) *podNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables", "setpriv", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	n := 1 + rand.IntN(250)
	p := &podNet{t: t, name: fmt.Sprintf("plpod%d", n), host: fmt.Sprintf("10.77.%d.1", n), pod: fmt.Sprintf("10.77.%d.2", n)}
	p.nsPath = "/var/run/netns/" + p.name
	p.scriptPath, _ = filepath.Abs("../../scripts/intercept.sh")
	hv, pv := fmt.Sprintf("plh%d", n), fmt.Sprintf("plp%d", n)
	exec.Command("ip", "netns", "del", p.name).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", hv).Run()
	runCmd(t, nil, "ip", "netns", "add", p.name)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hv).Run()
		exec.Command("ip", "netns", "del", p.name).Run()
	})
	runCmd(t, nil, "ip", "link", "add", hv, "type", "veth", "peer", "name", pv)
	runCmd(t, nil, "ip", "link", "set", pv, "netns", p.name)
	runCmd(t, nil, "ip", "addr", "add", p.host+"/24", "dev", hv)
	runCmd(t, nil, "ip", "link", "set", hv, "up")
	runCmd(t, nil, "ip", "netns", "exec", p.name, "ip", "addr", "add", p.pod+"/24", "dev", pv)
	runCmd(t, nil, "ip", "netns", "exec", p.name, "ip", "link", "set", pv, "up")
	runCmd(t, nil, "ip", "netns", "exec", p.name, "ip", "link", "set", "lo", "up")
	return p
}

// intercept installs the rules (env: the script's settings).
func (p *podNet) intercept(env ...string) {
	runCmd(p.t, env, p.scriptPath, "up", p.name)
}

// do runs f on a thread inside the pod's namespace: sockets f creates
// belong to it.
func (p *podNet) do(f func()) {
	p.t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked on error: the thread dies with the goroutine
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		ns, err := os.Open(p.nsPath)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		p.t.Fatal(err)
	}
}

// dial connects from inside the pod.
func (p *podNet) dial(addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	p.do(func() { c, err = net.DialTimeout("tcp", addr, 5*time.Second) })
	return c, err
}

// listen binds addr inside the pod.
func (p *podNet) listen(addr string) net.Listener {
	var ln net.Listener
	var err error
	p.do(func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { ln.Close() })
	return ln
}

// startProxy runs proxylab inside the pod with group 1337.
func (p *podNet) startProxy(config string) *proc {
	wrap := filepath.Join(p.t.TempDir(), "proxylab-in-pod")
	script := fmt.Sprintf("#!/bin/sh\nexec nsenter --net=/var/run/netns/%s setpriv --regid 1337 --clear-groups %s \"$@\"\n", p.name, binPath)
	if err := os.WriteFile(wrap, []byte(script), 0o755); err != nil {
		p.t.Fatal(err)
	}
	return startProxyBin(p.t, wrap, config)
}

// httpClient reaches addresses inside the pod (its admin API).
func (p *podNet) httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(_ context.Context, _, a string) (net.Conn, error) {
		return p.dial(a)
	}}}
}

// scrape reads the pod proxy's metrics as name{labels} → value lines.
func (p *podNet) scrape(pr *proc) string {
	resp, err := p.httpClient().Get("http://" + pr.adminAddr() + "/stats/prometheus")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetric waits until the pod proxy's metrics have line.
func (p *podNet) waitMetric(pr *proc, line string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := p.scrape(pr)
		if slices.Contains(strings.Split(m, "\n"), line) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("metrics never had %q:\n%s", line, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveEcho answers each line with tag, the peer's address and the line.
func serveEcho(ln net.Listener, tag string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s from=%s %s", tag, c.RemoteAddr().(*net.TCPAddr).IP, line)
				}
			}()
		}
	}()
}

// ask sends one line on c and reads the answer.
func ask(t *testing.T, c net.Conn, r *bufio.Reader, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %q: %v", line, err)
	}
	return strings.TrimSpace(s)
}

func sidecarConfig(tr string, maxHosts int) string {
	return fmt.Sprintf(`transport: %s
admin: {address: 127.0.0.1:0}
listeners:
  - name: outbound
    address: 0.0.0.0:15001
    original_dst: true
    tcp_proxy: {cluster: passthrough}
  - name: inbound
    address: 0.0.0.0:15006
    original_dst: true
    transparent: true
    tcp_proxy: {cluster: inbound}
clusters:
  - {name: passthrough, type: original_dst, max_hosts: %d, connect_timeout: 2s}
  - {name: inbound, type: original_dst, connect_timeout: 2s}
`, tr, maxHosts)
}

func metricHas(t *testing.T, metrics string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !slices.ContainsFunc(strings.Split(metrics, "\n"), func(m string) bool { return m == l }) {
			t.Errorf("metrics lack %q", l)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
}

// TestSidecarIntercept: an application in a pod namespace calls a service
// by the service's own address; iptables REDIRECT sends the call through
// proxylab (outbound listener, original_dst cluster), which reaches the
// right service; a call into the pod is taken by TPROXY and delivered to
// the pod's application by proxylab (the application sees the proxy as its
// peer). Loops (dialing the proxy's own port), unreachable destinations and
// more destinations than max_hosts are refused and counted.
func TestSidecarIntercept(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pod := newPod(t)
		var svcs []net.Listener
		for _, port := range []int{8080, 8081} {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", pod.host, port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			serveEcho(ln, fmt.Sprintf("svc%d", port))
			svcs = append(svcs, ln)
		}
		serveEcho(pod.listen(pod.pod+":9090"), "app")
		pod.intercept()
		p := pod.startProxy(sidecarConfig(tr, 1))

		// Unreachable: closed port → the app's connection is closed.
		c3, err := pod.dial(pod.host + ":1")
		if err == nil {
			c3.SetDeadline(time.Now().Add(10 * time.Second))
			if b, _ := io.ReadAll(c3); len(b) != 0 {
				t.Fatalf("unreachable answered %q", b)
			}
			c3.Close()
		}
		pod.waitMetric(p, `proxylab_original_dst_hosts{cluster="passthrough",name="outbound",side="listener"} 0`)
		// Outbound, intercepted: the service answers, the proxy counted it.
		c, err := pod.dial(pod.host + ":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if got := ask(t, c, r, "hi"); got != "svc8080 from="+pod.pod+" hi" {
			t.Fatalf("outbound: %q", got)
		}
		// A second destination while the first is open: max_hosts 1.
		c2, err := pod.dial(pod.host + ":8081")
		if err == nil {
			c2.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c2, "x\n")
			if b, err := io.ReadAll(c2); len(b) != 0 {
				t.Fatalf("max_hosts: second destination answered %q %v", b, err)
			}
			c2.Close()
		}
		// Loop: the proxy's own port dialed directly (loopback is not
		// intercepted) is refused.
		c4, err := pod.dial("127.0.0.1:15001")
		if err == nil {
			c4.SetDeadline(time.Now().Add(10 * time.Second))
			if b, _ := io.ReadAll(c4); len(b) != 0 {
				t.Fatalf("loop answered %q", b)
			}
			c4.Close()
		}

		// Inbound, TPROXY: the app sees the proxy (the pod's own address)
		// as its peer, not the caller.
		in, err := net.DialTimeout("tcp", pod.pod+":9090", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if got := ask(t, in, bufio.NewReader(in), "in"); got != "app from="+pod.pod+" in" {
			t.Fatalf("inbound: %q", got)
		}
		metricHas(t, pod.scrape(p),
			`proxylab_original_dst_total{name="outbound",result="redirected",side="listener"} 3`,
			`proxylab_original_dst_total{name="outbound",result="loop",side="listener"} 1`,
			`proxylab_original_dst_total{name="inbound",result="local",side="listener"} 1`,
			`proxylab_original_dst_overflow_total{cluster="passthrough",name="outbound",side="listener"} 1`,
			`proxylab_original_dst_cx_connect_fail_total{cluster="passthrough",name="outbound",side="listener"} 1`,
			`proxylab_original_dst_hosts{cluster="passthrough",name="outbound",side="listener"} 1`,
			`proxylab_original_dst_cx_total{cluster="inbound",name="inbound",side="listener"} 1`,
		)
	})
}

// TestSidecarLatency measures, in one run, a same-host call from the pod to
// a service directly (its port excluded from interception) and intercepted
// by iptables REDIRECT through proxylab: the round trip of a line on an
// open connection, and a new connection with one round trip. It reports
// medians and p99 (go test -v); it asserts only that every call answered.
func TestSidecarLatency(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		pod := newPod(t)
		for _, port := range []int{8080, 8082} {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", pod.host, port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			serveEcho(ln, "svc")
		}
		pod.intercept("EXCLUDE_OUT_PORTS=8082")
		pod.startProxy(sidecarConfig(tr, 0))
		const rtts, conns = 2000, 200
		q := func(d []time.Duration, f float64) time.Duration {
			slices.Sort(d)
			return d[int(f*float64(len(d)-1))]
		}
		for _, c := range []struct{ name, addr string }{{"direct", pod.host + ":8082"}, {"intercepted", pod.host + ":8080"}} {
			conn, err := pod.dial(c.addr)
			if err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(conn)
			ask(t, conn, r, "warm")
			rt := make([]time.Duration, 0, rtts)
			for range rtts {
				start := time.Now()
				ask(t, conn, r, "ping")
				rt = append(rt, time.Since(start))
			}
			conn.Close()
			nc := make([]time.Duration, 0, conns)
			for range conns {
				start := time.Now()
				conn, err := pod.dial(c.addr)
				if err != nil {
					t.Fatal(err)
				}
				ask(t, conn, bufio.NewReader(conn), "ping")
				nc = append(nc, time.Since(start))
				conn.Close()
			}
			t.Logf("%s %-11s round trip p50 %v p99 %v; new connection + round trip p50 %v p99 %v",
				tr, c.name, q(rt, 0.5), q(rt, 0.99), q(nc, 0.5), q(nc, 0.99))
		}
	})
}
