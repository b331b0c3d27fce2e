package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n  - name: a\n    address: 127.0.0.1:1\n    tcp_proxy: {cluster: nope}\nclusters:\n  - name: c\n    lb: rr2\n    hosts: [{address: 127.0.0.1:2}]\n"), 0o644)
	out, err := exec.Command(binPath, "validate", "-c", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s", err, out)
	}
	for _, want := range []string{
		`bad.yaml: clusters[0].lb: unknown policy "rr2" (available: least_request, maglev, random, ring_hash, round_robin)`,
		`bad.yaml: listeners[0].tcp_proxy.cluster: unknown cluster "nope"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(tcpConfig("netpoll", "127.0.0.1:1")), 0o644)
	if out, err := exec.Command(binPath, "validate", "-c", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestUnknownTransportRefused(t *testing.T) {
	out, err := exec.Command(binPath, "run", "--transport", "warp").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown transport "warp" (available: `) || !strings.Contains(string(out), "netpoll") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binPath, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "proxylab ") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestCPUPinning(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	p := startProxy(t, httpConfig("netpoll", []string{up.addr}, "", ""), "--cpus", "0")
	if !strings.Contains(p.logs(), "cpus=0 gomaxprocs=1") {
		t.Fatalf("startup line does not report the pinning:\n%s", p.logs())
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Cpus_allowed_list:") && strings.TrimSpace(strings.TrimPrefix(line, "Cpus_allowed_list:")) != "0" {
			t.Fatalf("process not pinned: %s", line)
		}
	}
	// And it still proxies.
	resp, err := http.Get("http://" + p.addr("http") + "/pinned")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}

// TestSIGTERMDrains: in-flight requests finish, new connections are refused,
// and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(800 * time.Millisecond)
			io.WriteString(w, "finished")
		}))
		p := startProxy(t, httpConfig(tr, []string{up.addr}, "", ""))
		addr := p.addr("http")
		idle := dialRaw(t, addr) // an idle keep-alive connection is closed by the drain
		type result struct {
			body string
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := http.Get("http://" + addr + "/slow")
			if err != nil {
				res <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			res <- result{string(b), err}
		}()
		time.Sleep(200 * time.Millisecond) // the request is in flight
		p.cmd.Process.Signal(syscall.SIGTERM)
		idle.expectClosed()
		time.Sleep(100 * time.Millisecond)
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Error("new connection accepted during drain")
		}
		r := <-res
		if r.err != nil || r.body != "finished" {
			t.Fatalf("in-flight request: %q %v", r.body, r.err)
		}
		select {
		case <-p.done:
			if p.err != nil {
				t.Fatalf("exit: %v", p.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not exit after draining")
		}
	})
}

// TestEmbeddedDefaultConfig is `make run` + curl: no file, the demo upstream
// answers through the proxy on 127.0.0.1:8080.
func TestEmbeddedDefaultConfig(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8080", 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("127.0.0.1:8080 is in use")
	}
	cmd := exec.Command(binPath, "run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
	var resp *http.Response
	var err error
	for i := 0; i < 50; i++ {
		if resp, err = http.Get("http://127.0.0.1:8080/hello"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "proxylab demo upstream: GET /hello (via 127.0.0.1)") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}
