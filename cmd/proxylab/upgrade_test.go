//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// upgradeConfig is a proxy with an HTTP listener (h1 and h2c), a
// tcp_proxy listener and, with extra, a third listener; web and tcp are
// the addresses to listen on (port 0 the first time).
func upgradeConfig(tr, web, tcp, upstream, echo string, extra bool) string {
	ex := ""
	if extra {
		ex = `
  - name: extra
    address: 127.0.0.3:0
    http_proxy: {}`
	}
	return fmt.Sprintf(`transport: %s
drain_timeout: 15s
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: %s
    http_proxy: {idle_timeout: 30s}
  - name: tcp
    address: %s
    tcp_proxy: {cluster: echo}%s
routes:
  - name: all
    domains: ["*"]
    routes:
      - prefix: /
        cluster: up
clusters:
  - name: up
    connect_timeout: 1s
    hosts: [{address: %q}]
  - name: echo
    connect_timeout: 1s
    hosts: [{address: %q}]
`, tr, web, tcp, ex, upstream, echo)
}

// loadRecorder collects request outcomes and latencies.
type loadRecorder struct {
	mu      sync.Mutex
	ok      int
	errs    []string
	samples []latencySample
}

type latencySample struct {
	at time.Time
	d  time.Duration
}

func (r *loadRecorder) record(start time.Time, err error) {
	d := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err.Error())
		return
	}
	r.ok++
	r.samples = append(r.samples, latencySample{start, d})
}

// p99 of the samples that started inside (or outside) the windows.
func (r *loadRecorder) p99(windows [][2]time.Time, inside bool) (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ds []time.Duration
	for _, s := range r.samples {
		in := false
		for _, w := range windows {
			if !s.at.Before(w[0]) && s.at.Before(w[1]) {
				in = true
			}
		}
		if in == inside {
			ds = append(ds, s.d)
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)*99/100], len(ds)
}

// httpLoad runs workers sending GETs through c until ctx ends, at most
// one request per pace per worker.
func httpLoad(ctx context.Context, wg *sync.WaitGroup, rec *loadRecorder, c *http.Client, url string, pace time.Duration) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for ctx.Err() == nil {
			start := time.Now()
			resp, err := c.Get(url)
			if err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rerr != nil:
					err = rerr
				case resp.StatusCode != 200 || string(body) != "ok":
					err = fmt.Errorf("%s %d %q", resp.Proto, resp.StatusCode, body)
				}
			}
			rec.record(start, err)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
}

// tcpStream sends a numbered byte pattern through a tcp_proxy echo until
// stop closes, then half-closes and checks every byte came back in order.
func tcpStream(t *testing.T, addr string, stop <-chan struct{}) <-chan error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	res := make(chan error, 1)
	pattern := func(off, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte((off + i) % 251)
		}
		return b
	}
	sent := make(chan int, 1)
	go func() {
		off := 0
		for {
			select {
			case <-stop:
				c.(*net.TCPConn).CloseWrite()
				sent <- off
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := c.Write(pattern(off, 1024)); err != nil {
				sent <- -1 - off
				return
			}
			off += 1024
		}
	}()
	go func() {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		got, err := io.ReadAll(c)
		n := <-sent
		switch {
		case n < 0:
			res <- fmt.Errorf("tcp stream: write failed after %d bytes (%d read back, read error %v)", -1-n, len(got), err)
		case err != nil:
			res <- fmt.Errorf("tcp stream: %v after %d bytes", err, len(got))
		case n != len(got) || !bytes.Equal(got, pattern(0, n)):
			res <- fmt.Errorf("tcp stream: sent %d bytes, got %d back (equal prefix: %v)", n, len(got), bytes.HasPrefix(pattern(0, n), got))
		default:
			res <- nil
		}
	}()
	return res
}

var upgradeAdminRE = regexp.MustCompile(`msg="admin ready" address=(\S+)`)

// stat reads one counter from the process's /stats (name with its
// labels as /stats prints them).
func (p *proc) stat(name string) int {
	p.t.Helper()
	m := upgradeAdminRE.FindAllStringSubmatch(p.logs(), -1)
	if m == nil {
		p.t.Fatal("no admin address in the log")
	}
	resp, err := http.Get("http://" + m[len(m)-1][1] + "/stats")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^proxylab_` + regexp.QuoteMeta(name) + `: (\d+)`)
	v := re.FindSubmatch(b)
	if v == nil {
		p.t.Fatalf("no %s in /stats:\n%s", name, b)
	}
	n, _ := strconv.Atoi(string(v[1]))
	return n
}

// doneCounts parses the old process's final upgrade log line.
func doneCounts(t *testing.T, p *proc) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`msg="upgrade: old process done".*listeners_passed=(\d+) connections_migrated=(\d+) connections_drained=(\d+) failures=(\d+)`)
	m := re.FindStringSubmatch(p.logs())
	if m == nil {
		t.Fatalf("no final upgrade line:\n%s", p.logs())
	}
	out := map[string]int{}
	for i, k := range []string{"passed", "migrated", "drained", "failures"} {
		out[k], _ = strconv.Atoi(m[i+1])
	}
	return out
}

func copyBinary(t *testing.T, dir string, gen int) string {
	t.Helper()
	b, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("proxylab-gen%d", gen))
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitExit(t *testing.T, p *proc, d time.Duration) time.Time {
	t.Helper()
	select {
	case <-p.done:
		return time.Now()
	case <-time.After(d):
		t.Fatalf("the old process did not exit within %v\n%s", d, p.logs())
	}
	return time.Time{}
}

// TestHotUpgrade: under steady HTTP/1.1, HTTP/2 and tcp_proxy load, three
// upgrades in a row (each a new binary path; one adds a listener, one
// removes it) and one failing new binary: no request fails, the long
// stream is byte-exact, and both sides count what was passed.
func TestHotUpgrade(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		if tr == "dpdk" {
			t.Skip("dpdk refuses hot upgrade (one process owns the port)")
		}
		// sockmap passes its listeners but drains its connections: its
		// connections have no Detach (a spliced pair lives in the old
		// process's BPF maps).
		migrates := tr != "sockmap"
		dir := t.TempDir()
		sock := filepath.Join(dir, "upgrade.sock")
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		echo := rawUpstream(t, func(c net.Conn) {
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		})
		gen1 := startProxy(t, upgradeConfig(tr, "127.0.0.1:0", "127.0.0.2:0", up.addr, echo, false), "--upgrade-socket", sock)
		web, tcp := gen1.addr("web"), gen1.addr("tcp")

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		rec := &loadRecorder{}
		var h1Dials atomicCounter // new HTTP/1.1 client connections: migration keeps them at 4
		for range 4 {
			c := h1Client()
			tr := c.Transport.(*http.Transport)
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				h1Dials.inc()
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			httpLoad(ctx, &wg, rec, c, "http://"+web+"/h1", 2*time.Millisecond)
		}
		for range 2 {
			httpLoad(ctx, &wg, rec, h2cClient(), "http://"+web+"/h2", 2*time.Millisecond)
		}
		stopStream := make(chan struct{})
		stream := tcpStream(t, tcp, stopStream)
		time.Sleep(300 * time.Millisecond)

		steps := []struct {
			extra    bool
			adopted  int // traffic listeners the new process adopts
			passedBy int // listeners the old process handed over
		}{{false, 2, 2}, {true, 2, 2}, {false, 2, 2}}
		procs := []*proc{gen1}
		var windows [][2]time.Time
		var takeover []time.Duration
		for i, st := range steps {
			old := procs[len(procs)-1]
			start := time.Now()
			next := startProxyBin(t, copyBinary(t, dir, i+2), upgradeConfig(tr, web, tcp, up.addr, echo, st.extra), "--upgrade-from", sock)
			procs = append(procs, next)
			if got := next.stat(`upgrade_listeners_passed{direction="in"}`); got != st.adopted {
				t.Errorf("gen%d adopted %d listeners, want %d", i+2, got, st.adopted)
			}
			if st.extra {
				if code, body := getStatus(t, "http://"+next.addr("extra")+"/"); code != 200 || body != "ok" {
					t.Errorf("the added listener answered %d %q", code, body)
				}
			}
			if old != gen1 { // gen1 keeps the long stream until the end
				end := waitExit(t, old, 20*time.Second)
				windows = append(windows, [2]time.Time{start, end})
				takeover = append(takeover, end.Sub(start))
			} else {
				windows = append(windows, [2]time.Time{start, time.Now().Add(200 * time.Millisecond)})
			}
			time.Sleep(300 * time.Millisecond)
		}
		last := procs[len(procs)-1]

		// A new binary with a bad config: refused, the old one serves on.
		bad := writeTemp(t, upgradeConfig(tr, web, tcp, up.addr, echo, false)+"bogus_key: 1\n")
		out, err := exec.Command(copyBinary(t, dir, 9), "run", "-c", bad, "--upgrade-from", sock).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "bogus_key") {
			t.Errorf("bad new binary: %v\n%s", err, out)
		}
		if got := last.stat("upgrade_failures"); got != 1 {
			t.Errorf("upgrade_failures %d after a failed new binary, want 1", got)
		}
		if !strings.Contains(last.logs(), "upgrade: failed, still serving") || !strings.Contains(last.logs(), "bogus_key") {
			t.Errorf("the old process did not log the failed attempt with its reason:\n%s", last.logs())
		}
		time.Sleep(300 * time.Millisecond)

		close(stopStream)
		if err := <-stream; err != nil {
			t.Error(err)
		}
		cancel()
		wg.Wait()
		waitExit(t, gen1, 20*time.Second)
		migrated := 0
		for i, p := range procs[:len(procs)-1] {
			c := doneCounts(t, p)
			if c["passed"] != steps[i].passedBy || c["failures"] != 0 {
				t.Errorf("gen%d final counts %v", i+1, c)
			}
			if i == 0 && c["drained"] < 3 { // the tcp stream and the two h2 clients
				t.Errorf("gen1 drained %d connections", c["drained"])
			}
			// What one side sent, the other adopted.
			next := procs[i+1]
			got := 0
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if got = next.stat(`upgrade_connections_migrated{direction="in"}`); got == c["migrated"] || time.Now().After(deadline) {
					break
				}
			}
			if got != c["migrated"] {
				t.Errorf("gen%d migrated %d connections, gen%d adopted %d", i+1, c["migrated"], i+2, got)
			}
			migrated += c["migrated"]
		}
		if migrates && migrated < len(steps) {
			t.Errorf("%d connections migrated in %d upgrades", migrated, len(steps))
		}
		if n := h1Dials.get(); migrates && n != 4 { // idle keep-alive connections moved instead of closing
			t.Errorf("the 4 HTTP/1.1 clients opened %d connections over %d upgrades", n, len(steps))
		}
		if code, _ := getStatus(t, "http://"+web+"/"); code != 200 {
			t.Errorf("the last generation answers %d", code)
		}
		rec.mu.Lock()
		ok, errs := rec.ok, rec.errs
		rec.mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("%d of %d requests failed; first: %v", len(errs), ok+len(errs), errs[:min(len(errs), 5)])
		}
		in, nIn := rec.p99(windows, true)
		outP, nOut := rec.p99(windows, false)
		t.Logf("%s: %d requests, %d failed; p99 during upgrades %v (%d requests), otherwise %v (%d); new binary start to old exit %v; h1 connections opened %d, migrated %d",
			tr, ok+len(errs), len(errs), in, nIn, outP, nOut, takeover, h1Dials.get(), migrated)
	})
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
