//go:build dpdk && linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/bench/upstream"
)

// The DPDK transport end to end: a network namespace holds the kernel side
// (client and upstreams) behind a veth pair; proxylab owns the other end
// with DPDK's net_af_packet PMD (EAL with --no-huge) and gVisor's netstack.
// Built with -tags dpdk (make test does when libdpdk-dev is there) and run
// as root.

type dpdkNet struct {
	ns, hostIf, nsIf string
	nsAddr, pxAddr   string // 10.x.0.1 in the namespace, 10.x.0.2 on the DPDK side
}

func setupDPDKNet(t *testing.T) *dpdkNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the DPDK test needs root (network namespaces, raw sockets)")
	}
	id := os.Getpid() % 200
	n := &dpdkNet{ns: fmt.Sprintf("plabdp%d", id), hostIf: fmt.Sprintf("plabd%d", id), nsIf: fmt.Sprintf("plabk%d", id),
		nsAddr: fmt.Sprintf("10.%d.0.1", 30+id), pxAddr: fmt.Sprintf("10.%d.0.2", 30+id)}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	exec.Command("ip", "netns", "del", n.ns).Run()
	exec.Command("ip", "link", "del", n.hostIf).Run()
	run("ip", "netns", "add", n.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.ns).Run() }) // takes the veth pair with it
	run("ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	run("ip", "link", "set", n.nsIf, "netns", n.ns)
	run("ip", "netns", "exec", n.ns, "ip", "addr", "add", n.nsAddr+"/24", "dev", n.nsIf)
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", n.nsIf, "up")
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", "lo", "up")
	run("ip", "link", "set", n.hostIf, "up")
	// Without this the kernel side's frames carry unfilled checksums and
	// the userspace stack drops even the SYN.
	run("ip", "netns", "exec", n.ns, "ethtool", "-K", n.nsIf, "tx", "off")
	return n
}

// inNS runs f on a thread that has entered the namespace: sockets made
// there belong to it for their whole life (the thread is not reused).
func (n *dpdkNet) inNS(t *testing.T, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(filepath.Join("/var/run/netns", n.ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err == nil {
			f()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var dpdkBin struct {
	once sync.Once
	path string
	err  error
}

func dpdkBinary(t *testing.T) string {
	dpdkBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "proxylab-dpdk")
		if err != nil {
			dpdkBin.err = err
			return
		}
		dpdkBin.path = filepath.Join(dir, "proxylab")
		if out, err := exec.Command("go", "build", "-tags", "dpdk", "-o", dpdkBin.path, ".").CombinedOutput(); err != nil {
			dpdkBin.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if dpdkBin.err != nil {
		t.Fatal(dpdkBin.err)
	}
	return dpdkBin.path
}

func TestDPDKTransportEndToEnd(t *testing.T) {
	t.Run("one-queue", func(t *testing.T) { testDPDKEndToEnd(t, 1) })
	// Two queue pairs (af_packet: two sockets in a fanout group, which
	// spreads flows by hash), each polled by its own lcore.
	t.Run("two-queues", func(t *testing.T) { testDPDKEndToEnd(t, 2) })
}

func testDPDKEndToEnd(t *testing.T, queues int) {
	n := setupDPDKNet(t)
	bin := dpdkBinary(t)
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := adminLn.Addr().String()
	adminLn.Close()
	p := newPKI(t)

	// Upstreams in the namespace: an HTTP echo and a TCP echo.
	var httpLn, tcpLn net.Listener
	n.inNS(t, func() {
		var err error
		if httpLn, err = net.Listen("tcp", n.nsAddr+":9000"); err != nil {
			t.Error(err)
			return
		}
		tcpLn, err = net.Listen("tcp", n.nsAddr+":9001")
		if err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Write(body)
	})}
	go srv.Serve(httpLn)
	t.Cleanup(func() { srv.Close() })
	go upstream.ServeEcho(tcpLn)
	t.Cleanup(func() { tcpLn.Close() })

	cfg := fmt.Sprintf(`transport: dpdk
admin: {address: %q}
dpdk:
  eal: [--no-huge, --no-pci, -m, "256", --file-prefix, plabt%d-%d, --vdev, "net_af_packet0,iface=%s,qpairs=%d"]
  port: net_af_packet0
  address: %s/24
  queues: %d
listeners:
  - {name: http, address: "0.0.0.0:8080", http_proxy: {}}
  - {name: tcp, address: "0.0.0.0:8081", tcp_proxy: {cluster: echo}}
  - {name: https, address: "0.0.0.0:8443", tls: {certificates: [{cert_file: %q, key_file: %q}], handshake_timeout: 500ms}, http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: "%s:9000"}]}
  - {name: echo, hosts: [{address: "%s:9001"}]}
`, adminAddr, os.Getpid(), queues, n.hostIf, queues, n.pxAddr, queues, p.file("server.pem"), p.file("server-key.pem"), n.nsAddr, n.nsAddr)
	cfgPath := writeTemp(t, cfg)
	cmd := exec.Command(bin, "run", "-c", cfgPath, "--log-level", "info")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("proxylab log:\n%s", logs.String())
		}
	})
	waitFor(t, 10*time.Second, "proxylab started", func() bool { return strings.Contains(logs.String(), "proxylab started") })

	// Kernel clients in the namespace.
	dial := func(network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		n.inNS(t, func() { c, err = net.DialTimeout(network, addr, 5*time.Second) })
		return c, err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) },
	}}
	base := "http://" + n.pxAddr + ":8080"

	// HTTP: a 1 MiB body there and back, byte for byte.
	body := make([]byte, 1<<20)
	rand.Read(body)
	resp, err := client.Post(base+"/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.Header.Get("X-Seen-Host") != n.pxAddr+":8080" {
		t.Fatalf("echo: %d, %d of %d bytes, host %q", resp.StatusCode, len(got), len(body), resp.Header.Get("X-Seen-Host"))
	}

	// Many connections at once.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dial("tcp", n.pxAddr+":8080")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := strings.Repeat(fmt.Sprint(i), 100)
			fmt.Fprintf(c, "POST /c%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", i, len(msg), msg)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || !bytes.HasSuffix(b, []byte(msg)) || !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
				errs <- fmt.Errorf("conn %d: %v %q", i, err, b[:min(len(b), 80)])
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// TLS through the userspace stack: concurrent handshakes (inline, on
	// the connections' read goroutines) and 64 KiB bodies both ways.
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost"},
		DialContext:     func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) },
	}}
	tlsErrs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			resp, err := tlsClient.Post(fmt.Sprintf("https://%s:8443/t%d", n.pxAddr, i), "application/octet-stream", bytes.NewReader(msg))
			if err != nil {
				tlsErrs <- fmt.Errorf("https %d: %w", i, err)
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(got, msg) || resp.TLS == nil {
				tlsErrs <- fmt.Errorf("https %d: %d, %d of %d bytes", i, resp.StatusCode, len(got), len(msg))
			}
		}(i)
	}
	wg.Wait()
	close(tlsErrs)
	for err := range tlsErrs {
		t.Fatal(err)
	}
	// A client that never says hello is closed after handshake_timeout.
	stall, err := dial("tcp", n.pxAddr+":8443")
	if err != nil {
		t.Fatal(err)
	}
	stall.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := stall.Read(make([]byte, 8)); k != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled TLS client: read %d, %v; want closed by the proxy", k, err)
	}
	stall.Close()

	// TCP: 4 MiB up while the echo streams back, then half-close.
	c, err := dial("tcp", n.pxAddr+":8081")
	if err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 4<<20)
	rand.Read(in)
	back := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(c); back <- b }()
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case b := <-back:
		if !bytes.Equal(b, in) {
			t.Fatalf("tcp echo: %d of %d bytes", len(b), len(in))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tcp echo: no EOF")
	}
	c.Close()

	// Every queue carried traffic, and its counters are exported.
	a := adminClient{t: t, base: "http://" + adminAddr}
	fams := a.scrape()
	for q := 0; q < queues; q++ {
		rx := value(t, fams, "proxylab_dpdk_rx_packets_total", map[string]string{"transport": "dpdk", "queue": fmt.Sprint(q)})
		tx := value(t, fams, "proxylab_dpdk_tx_packets_total", map[string]string{"transport": "dpdk", "queue": fmt.Sprint(q)})
		t.Logf("queue %d: rx %v tx %v packets", q, rx, tx)
		if rx < 50 || tx < 50 {
			t.Errorf("queue %d: rx %v tx %v packets; want traffic on every queue", q, rx, tx)
		}
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("queues=%d", queues)) {
		t.Errorf("start-up log does not say queues=%d", queues)
	}

	// Clean teardown: SIGINT stops the port and the EAL, exit 0.
	stopped = true
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("proxylab did not stop on SIGINT")
	}
}

// TestDPDKErrorsAreClear: a port the EAL does not have, and an EAL that
// cannot start, refuse the transport with what to do, not a crash.
func TestDPDKErrorsAreClear(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := dpdkBinary(t)
	n := setupDPDKNet(t)
	pid := os.Getpid()
	withVeth := func(i int) string {
		return fmt.Sprintf(`[--no-huge, --no-pci, -m, "256", --file-prefix, plabq%d-%d, --vdev, "net_af_packet0,iface=%s"]`, pid, i, n.hostIf)
	}
	for i, tc := range []struct {
		eal    string
		queues int
		args   []string
		want   string
	}{
		{fmt.Sprintf(`[--no-huge, --no-pci, -m, "256", --file-prefix, plabe%d]`, pid), 0, nil, `dpdk: port "net_af_packet0" not found`},
		{`[--no-huge, --no-pci, -m, "256", --bogus-eal-flag]`, 0, nil, "dpdk: EAL init"},
		// af_packet has one queue pair unless qpairs= says more.
		{withVeth(1), 2, nil, `dpdk: port "net_af_packet0" has at most 1 queue pairs, 2 asked`},
		// Each queue needs a CPU to poll on.
		{withVeth(2), 2, []string{"--cpus", "0"}, "dpdk: 2 queues need 2 CPUs to poll on, the process is pinned to 1"},
	} {
		cfg := fmt.Sprintf("transport: dpdk\ndpdk: {eal: %s, port: net_af_packet0, address: 10.99.0.2/24, queues: %d}\nlisteners:\n  - {name: t, address: \"0.0.0.0:8081\", tcp_proxy: {cluster: c}}\nclusters:\n  - {name: c, hosts: [{address: \"10.99.0.1:9\"}]}\n", tc.eal, tc.queues)
		args := append([]string{"run", "-c", writeTemp(t, cfg)}, tc.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("case %d (eal %s, queues %d): err %v, want %q in:\n%s", i, tc.eal, tc.queues, err, tc.want, out)
		}
	}
}
