package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/config"
)

// echoUpstream echoes every byte, prefixed once per connection by name.
func echoUpstream(tb testing.TB, name string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+":")
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestApplyTCP: a tcp_proxy pair is left to finish when its listener
// changes (until drain_timeout) and untouched when its cluster is rebuilt;
// new connections follow the new config.
func TestApplyTCP(t *testing.T) {
	e1, e2 := echoUpstream(t, "E1"), echoUpstream(t, "E2")
	addr := freeAddr(t)
	yml := func(wm int, host, timeout, drain string) *config.Config {
		cfg, err := config.Parse([]byte(fmt.Sprintf(`drain_timeout: %s
listeners:
  - {name: t, address: %q, tcp_proxy: {cluster: e, high_watermark: %d}}
clusters:
  - {name: e, connect_timeout: %s, hosts: [{address: %q}]}
`, drain, addr, wm, timeout, host)), known())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := startServer(t, yml(65536, e1, "1s", "400ms"))
	roundTrip := func(c net.Conn, r *bufio.Reader, msg, want string) {
		t.Helper()
		io.WriteString(c, msg)
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != want {
			t.Fatalf("got %q %v, want %q", buf, err, want)
		}
	}
	open := func(want string) (net.Conn, *bufio.Reader) {
		c := dial(t, addr)
		roundTrip(c.c, c.r, "hi", want+":hi")
		return c.c, c.r
	}
	c1, r1 := open("E1")
	// Cluster rebuilt (connect_timeout) and moved to E2: the pair stays
	// on E1, new pairs go to E2, nothing is drained.
	if err := s.Apply(yml(65536, e2, "2s", "400ms")); err != nil {
		t.Fatal(err)
	}
	roundTrip(c1, r1, "again", "again")
	c2, r2 := open("E2")
	time.Sleep(600 * time.Millisecond) // past drain_timeout: still open
	roundTrip(c1, r1, "still", "still")
	// The listener changes: the pairs are left to finish, then closed at
	// drain_timeout.
	start := time.Now()
	if err := s.Apply(yml(32768, e2, "2s", "400ms")); err != nil {
		t.Fatal(err)
	}
	roundTrip(c2, r2, "during", "during")
	open("E2")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r2.ReadByte(); err == nil || isTimeout(err) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("pair not closed at drain_timeout: %v after %v", err, time.Since(start))
	}
}

// TestApplyHealthCheck: a changed health_check restarts the checks on the
// same hosts, which keep their verdicts; removing it marks all healthy.
func TestApplyHealthCheck(t *testing.T) {
	up, dead := namedUpstream(t, "A1"), freeAddr(t)
	yml := func(hc string) *config.Config {
		cfg, err := config.Parse([]byte(fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: a}]}
clusters:
  - {name: a, hosts: [{address: %q}, {address: %q}, {address: %q}]%s}
`, up, dead, freeAddr(t), hc)), known())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := yml(", health_check: {interval: 20ms, timeout: 100ms, unhealthy_threshold: 1}")
	s := startServer(t, cfg)
	c := s.Clusters().Get("a")
	hosts := hostPtrs(c)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("dead host never marked unhealthy", func() bool { return !hosts[dead].Healthy() })
	// Same hosts (the third's address is new: a host added), new interval.
	next := yml(", health_check: {interval: 30ms, timeout: 100ms, unhealthy_threshold: 1}")
	next.Clusters[0].Hosts = cfg.Clusters[0].Hosts
	if err := s.Apply(next); err != nil {
		t.Fatal(err)
	}
	if got := hostPtrs(c); got[dead] != hosts[dead] || got[dead].Healthy() || !got[up].Healthy() {
		t.Fatal("hosts or their health not kept across a health_check change")
	}
	attempts := s.HealthStats()["a"].Attempts.Value()
	waitFor("checks did not go on", func() bool { return s.HealthStats()["a"].Attempts.Value() > attempts+3 })
	off := yml("")
	off.Clusters[0].Hosts = cfg.Clusters[0].Hosts
	if err := s.Apply(off); err != nil {
		t.Fatal(err)
	}
	if !hosts[dead].Healthy() || s.HealthStats()["a"] != nil {
		t.Fatal("health_check removed: hosts not all healthy, or its stats still exported")
	}
}

// TestApplyAccessLog: a changed listener whose access_log is set the same
// keeps its logger (one writer per file), past the old connections' drain.
func TestApplyAccessLog(t *testing.T) {
	a1 := namedUpstream(t, "A1")
	logPath := t.TempDir() + "/access.log"
	base := reloadCfg{Addr: freeAddr(t), HostsA: []string{a1}, DrainAfter: "100ms",
		Extra: fmt.Sprintf("{access_log: {path: %q, format: \"%%REQ(:PATH)%%\\n\"}}", logPath)}
	s := startServer(t, base.parse(t))
	lg := s.Infos()[0].AccessLog
	getOnce(t, firstAddr(s), "/one")
	next := base
	next.Extra = fmt.Sprintf("{access_log: {path: %q, format: \"%%REQ(:PATH)%%\\n\"}, idle_timeout: 61s}", logPath)
	if err := s.Apply(next.parse(t)); err != nil {
		t.Fatal(err)
	}
	if s.Infos()[0].AccessLog != lg {
		t.Fatal("access logger replaced though its settings did not change")
	}
	time.Sleep(300 * time.Millisecond) // past the drain deadline: the old chain's resources closed
	getOnce(t, firstAddr(s), "/two")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		if string(b) == "/one\n/two\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log %q", b)
		}
	}
}

func firstAddr(s *Server) string { return s.Listeners()[0].Addr().String() }
