package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the proxylab binary the integration tests run: built once by
// TestMain, or taken from PROXYLAB_BIN.
var binPath string

// transports lists every transport the integration suite runs against; a
// new transport adds its name here (or via PROXYLAB_TRANSPORTS) and the whole
// suite runs over it from the same test code.
var transports = append([]string{"netpoll"}, platformTransports...)

func TestMain(m *testing.M) {
	if v := os.Getenv("PROXYLAB_TRANSPORTS"); v != "" {
		transports = strings.Split(v, ",")
	} else {
		transports = append(transports, probedTransports()...)
	}
	binPath = os.Getenv("PROXYLAB_BIN")
	dir := ""
	if binPath == "" {
		var err error
		dir, err = os.MkdirTemp("", "proxylab-test")
		if err != nil {
			panic(err)
		}
		binPath = filepath.Join(dir, "proxylab")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building proxylab: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// proc is a running proxylab.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	addrs map[string]string // listener name → bound address
	mu    sync.Mutex
	log   strings.Builder
	done  chan struct{}
	err   error
}

var readyRE = regexp.MustCompile(`msg="listener ready" name=(\S+) address=(\S+)`)

// startProxy runs proxylab with the config text (listener addresses may use
// port 0) and waits until every listener is ready.
func startProxy(t *testing.T, config string, args ...string) *proc {
	t.Helper()
	return startProxyBin(t, binPath, config, args...)
}

// startProxyBin is startProxy with another build of proxylab (one with
// extra plugins registered: TestDocsExamples).
func startProxyBin(t *testing.T, bin, config string, args ...string) *proc {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "proxylab.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, addrs: map[string]string{}, done: make(chan struct{})}
	args = append(args, transportArgs(t, config, args)...)
	p.cmd = exec.Command(bin, append([]string{"run", "-c", cfgPath, "--log-level", "debug"}, args...)...)
	// An io.Pipe, not StderrPipe: Wait returns only after exec copied all
	// of stderr into it, and done closes only after every line was read,
	// so the last lines of an exited process are never lost.
	stderr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := readyRE.FindStringSubmatch(line); m != nil {
				p.addrs[m[1]] = m[2]
			}
			p.mu.Unlock()
			if strings.Contains(line, `msg="proxylab started"`) {
				once.Do(func() { close(started) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		<-readDone
		p.err = err
		close(p.done)
	}()
	select {
	case <-started:
	case <-p.done:
		t.Fatalf("proxylab exited during start: %v\n%s", p.err, p.logs())
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("proxylab did not start\n%s", p.logs())
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if strings.Contains(p.logs(), "WARNING: DATA RACE") {
			t.Errorf("the race detector fired in proxylab")
		}
		if t.Failed() {
			t.Logf("proxylab log:\n%s", p.logs())
		}
	})
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.addrs[name]
	if !ok {
		p.t.Fatalf("no listener %q in %v", name, p.addrs)
	}
	return a
}

// get requests path on the "web" listener and returns status and body.
func (p *proc) get(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.addr("web") + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rssKiB reads the process's resident set (VmRSS) and its peak (VmHWM).
func (p *proc) rssKiB() (rss, peak int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "VmHWM:":
			peak = n
		}
	}
	return rss, peak
}

// httpConfig is a one-listener http_proxy config in front of upstream
// addresses (one cluster "up"), with extra YAML for the http_proxy block and
// the route.
func httpConfig(transport string, upstreams []string, httpExtra, routeExtra string) string {
	var hosts strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&hosts, "      - address: %q\n", u)
	}
	return fmt.Sprintf(`transport: %s
drain_timeout: 5s
listeners:
  - name: http
    address: 127.0.0.1:0
    http_proxy:
      idle_timeout: 30s
%s
routes:
  - name: all
    domains: ["*"]
    routes:
      - prefix: /
        cluster: up
%s
clusters:
  - name: up
    connect_timeout: 1s
    hosts:
%s`, transport, indent(httpExtra, 6), indent(routeExtra, 8), hosts.String())
}

func indent(s string, n int) string {
	if s == "" {
		return ""
	}
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

// goUpstream is a Go HTTP test server on a random loopback port that counts
// the connections it accepted.
type goUpstream struct {
	addr  string
	srv   *http.Server
	conns atomicCounter
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func startUpstream(t *testing.T, h http.Handler) *goUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &goUpstream{addr: ln.Addr().String()}
	u.srv = &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.inc()
		}
	}}
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

// rawConn is a client connection for byte-level tests.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// readResponse reads one response with net/http's parser (the request is
// needed to know HEAD semantics).
func (c *rawConn) readResponse(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// expectClosed asserts the proxy closes the connection (EOF, not a timeout).
func (c *rawConn) expectClosed() {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	n, err := c.r.Read(buf)
	if err == nil {
		c.t.Fatalf("connection still open, read %q", buf[:n])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed within 5s")
	}
}

// forEachTransport runs f once per transport as a subtest.
func forEachTransport(t *testing.T, f func(t *testing.T, tr string)) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { f(t, tr) })
	}
}

func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "proxylab.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
