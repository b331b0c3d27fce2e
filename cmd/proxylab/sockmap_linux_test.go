package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/bench/upstream"
)

// The sockmap transport's own behaviour through the binary; the rest of
// the suite also runs over it (forEachTransport) where the host allows.

func needSockmap(t *testing.T) {
	t.Helper()
	if !slices.Contains(transports, "sockmap") {
		t.Skip("sockmap transport not run here (needs root, BPF and cgroup v2)")
	}
}

// TestSockmapSpliceTCPProxy: tcp_proxy pairs are spliced in the kernel:
// 40 of 40 bidirectional runs (1 MiB up while the echo streams back, then
// half-close) arrive byte-exact, 16 more run at once, and the metrics show
// the pairs spliced and the bytes counted.
func TestSockmapSpliceTCPProxy(t *testing.T) {
	needSockmap(t)
	up := rawUpstream(t, upstream.Echo)
	// The proxy in a cgroup of its own (created and joined): its sockets
	// are recorded for SK_MSG, their far ends are not, so they splice.
	p := startProxy(t, tcpConfig("sockmap", up)+"admin: {address: \"127.0.0.1:0\"}\n")
	run := func() error {
		c, err := net.Dial("tcp", p.addr("tcp"))
		if err != nil {
			return err
		}
		defer c.Close()
		in := make([]byte, 1<<20)
		rand.Read(in)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(c)
			got <- b
		}()
		if _, err := c.Write(in); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case b := <-got:
			if !bytes.Equal(b, in) {
				return fmt.Errorf("%d of %d bytes back", len(b), len(in))
			}
			return nil
		case <-time.After(15 * time.Second):
			return fmt.Errorf("no EOF")
		}
	}
	for i := 0; i < 40; i++ {
		if err := run(); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- run() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a := adminClient{t: t, base: "http://" + p.adminAddr()}
	var fams = a.scrape()
	splices := value(t, fams, "proxylab_sockmap_splices_total", map[string]string{"transport": "sockmap"})
	spliced := value(t, fams, "proxylab_sockmap_spliced_bytes_total", map[string]string{"transport": "sockmap"})
	// A pair whose client finished before the upstream connected is
	// never spliced (nothing left to forward); nearly all are.
	if splices < 50 || spliced < 50*2*(1<<20) {
		t.Fatalf("splices %v, spliced bytes %v", splices, spliced)
	}
	// The byte counters of tcp_proxy include what the kernel forwarded.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fams = a.scrape()
		tx := value(t, fams, "proxylab_tcp_upstream_tx_bytes_total", map[string]string{"listener": "tcp"})
		if tx >= 56*(1<<20) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream tx bytes %v", tx)
		}
	}
}

// TestSockmapSameHostRedirect: with the client and the upstream in the
// proxy's cgroup, HTTP through the proxy runs over SK_MSG redirects (both
// hops skip TCP/IP) and every response is right.
func TestSockmapSameHostRedirect(t *testing.T) {
	needSockmap(t)
	cg := filepath.Join(cgroup2Mount(), fmt.Sprintf("proxylab-it-redirect-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(cg) }) // last: after the proxy has exited
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	p := startProxy(t, httpConfig("sockmap", []string{up.addr}, "", "")+"admin: {address: \"127.0.0.1:0\"}\n", "--cgroup", cg)
	// The test process joins too: its client and upstream sockets are
	// then recorded, and both hops are redirected. Connections opened
	// before (the upstream's listener is fine: only established sockets
	// count) stay as they are.
	join(t, cg)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	for i := 0; i < 50; i++ {
		body := strings.Repeat("x", i*100)
		resp, err := client.Post("http://"+p.addr("http")+"/r"+strconv.Itoa(i), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), body) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	a := adminClient{t: t, base: "http://" + p.adminAddr()}
	fams := a.scrape()
	if n := value(t, fams, "proxylab_sockmap_msg_redirects_total", map[string]string{"transport": "sockmap"}); n < 100 {
		t.Fatalf("%v messages redirected for 50 proxied requests", n)
	}
}

// join moves this process into cgroup dir until the test ends.
func join(t *testing.T, dir string) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/cgroup")
	old := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			old = filepath.Join(cgroup2Mount(), rest)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(filepath.Join(old, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0) })
}

// TestSockmapKilledRunIsReplaced: a proxy killed with SIGKILL leaves its
// programs attached and pinned; the next one on that cgroup detaches them
// and says so, and a clean stop leaves nothing behind.
func TestSockmapKilledRunIsReplaced(t *testing.T) {
	needSockmap(t)
	cg := filepath.Join(cgroup2Mount(), fmt.Sprintf("proxylab-it-kill-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(cg) }) // last: after the proxies have exited
	cfg := tcpConfig("sockmap", closedPort(t))
	first := exec.Command(binPath, "run", "-c", writeTemp(t, cfg), "--cgroup", cg)
	out := &lockedBuffer{}
	first.Stderr = out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	pins := fmt.Sprintf("/sys/fs/bpf/proxylab/*-%d-*", first.Process.Pid)
	waitFor(t, 10*time.Second, "the first run's pins", func() bool { m, _ := filepath.Glob(pins); return len(m) == 1 })
	first.Process.Kill()
	first.Wait()
	if m, _ := filepath.Glob(pins); len(m) != 1 {
		t.Fatalf("after SIGKILL the pins should remain: %v", m)
	}
	p := startProxy(t, cfg, "--cgroup", cg)
	if !strings.Contains(p.logs(), "detached what a previous run left attached") {
		t.Fatalf("the second run did not replace the first's objects:\n%s", p.logs())
	}
	if m, _ := filepath.Glob(pins); len(m) != 0 {
		t.Fatalf("stale pins still there: %v", m)
	}
	second := fmt.Sprintf("/sys/fs/bpf/proxylab/*-%d-*", p.cmd.Process.Pid)
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	if m, _ := filepath.Glob(second); len(m) != 0 {
		t.Fatalf("a clean stop left pins: %v", m)
	}
}

// TestSockmapRefusedWithReason: what the host does not allow refuses the
// transport at start with the reason, not a crash.
func TestSockmapRefusedWithReason(t *testing.T) {
	needSockmap(t)
	cmd := exec.Command(binPath, "run", "-c", writeTemp(t, tcpConfig("sockmap", closedPort(t))), "--cgroup", "/tmp/not-a-cgroup")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sockmap: cgroup /tmp/not-a-cgroup is not under the cgroup v2 mount") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}
