package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTCPAccessLog: one line per tcp_proxy connection with the bytes each
// way, the upstream host and why it ended — also for a failed connect —
// with the HTTP access log's command operators.
func TestTCPAccessLog(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		counter := rawUpstream(t, func(c net.Conn) {
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d", n)
		})
		logPath := filepath.Join(t.TempDir(), "tcp.log")
		format := `%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS% %CONNECTION_TERMINATION_DETAILS% %DURATION%`
		cfg := strings.Replace(tcpConfig(tr, counter), "tcp_proxy: {cluster: up}",
			fmt.Sprintf("tcp_proxy: {cluster: up, access_log: {path: %s, format: '%s'}}", logPath, format), 1)
		cfg += fmt.Sprintf(`  - name: dead
    connect_timeout: 1s
    hosts: [{address: %q}]
`, closedPort(t))
		cfg = strings.Replace(cfg, "clusters:", fmt.Sprintf(`  - name: tcpdead
    address: 127.0.0.2:0
    tcp_proxy: {cluster: dead, access_log: {path: %s}}
clusters:`, logPath+".dead"), 1)
		p := startProxy(t, cfg)

		c := dialRaw(t, p.addr("tcp"))
		payload := bytes.Repeat([]byte("x"), 100000)
		c.Write(payload)
		c.Conn.(*net.TCPConn).CloseWrite()
		reply, _ := io.ReadAll(c.r)
		if string(reply) != "got 100000" {
			t.Fatalf("reply %q", reply)
		}
		c.Close()
		want := fmt.Sprintf("up %s 100000 %d - ", counter, len(reply))
		waitFor(t, 10*time.Second, "tcp access log line", func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), want)
		})
		b, _ := os.ReadFile(logPath)
		if !strings.Contains(string(b), "_closed ") {
			t.Errorf("no termination reason: %q", b)
		}

		d := dialRaw(t, p.addr("tcpdead"))
		d.expectClosed()
		waitFor(t, 10*time.Second, "failed connect logged", func() bool {
			b, _ := os.ReadFile(logPath + ".dead")
			return strings.Contains(string(b), " dead ") && strings.Contains(string(b), " UF upstream_connect_failed")
		})
	})
}
