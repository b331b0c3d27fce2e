//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// genConfig tags every response with the generation that proxied it.
func genConfig(tr, web, upstream string, gen int) string {
	return fmt.Sprintf(`transport: %s
drain_timeout: 10s
listeners:
  - name: web
    address: %s
    http_proxy:
      response_headers_to_add: [{name: x-gen, value: "%d"}]
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
`, tr, web, gen, upstream)
}

// TestHotUpgradeMigratesAtBoundary: a connection with a request in flight
// finishes it in the old process and then moves; an idle one with half a
// request line moves with those bytes; an idle one moves as it is. All
// three keep their socket (no Connection: close, no reset) and their next
// responses come from the new process.
func TestHotUpgradeMigratesAtBoundary(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		if tr != "netpoll" && tr != "rawepoll" {
			t.Skip("connections migrate on netpoll and rawepoll")
		}
		release := make(chan struct{})
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				select {
				case <-release:
				case <-time.After(8 * time.Second):
				}
			}
			io.WriteString(w, r.URL.Path)
		}))
		dir := t.TempDir()
		sock := filepath.Join(dir, "upgrade.sock")
		gen1 := startProxy(t, genConfig(tr, "127.0.0.1:0", up.addr, 1), "--upgrade-socket", sock)
		web := gen1.addr("web")
		check := func(c *rawConn, path, gen string) {
			t.Helper()
			resp, body := c.readResponse("GET")
			if body != path || resp.Header.Get("X-Gen") != gen || resp.Close {
				t.Fatalf("%s: %d %q from gen %q, close %v", path, resp.StatusCode, body, resp.Header.Get("X-Gen"), resp.Close)
			}
		}
		busy, partial, idle := dialRaw(t, web), dialRaw(t, web), dialRaw(t, web)
		for _, c := range []*rawConn{busy, partial, idle} {
			c.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
			check(c, "/first", "1")
		}
		busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		partial.send("GET /carried HT")
		time.Sleep(100 * time.Millisecond) // both reach gen1

		startProxyBin(t, copyBinary(t, dir, 2), genConfig(tr, web, up.addr, 2), "--upgrade-from", sock)
		idle.send("GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
		check(idle, "/idle", "2")
		partial.send("TP/1.1\r\nHost: x\r\n\r\n")
		check(partial, "/carried", "2")
		close(release)
		check(busy, "/slow", "1") // finished where it started, kept alive
		busy.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		check(busy, "/after", "2")

		waitExit(t, gen1, 10*time.Second)
		if c := doneCounts(t, gen1); c["migrated"] != 3 || c["drained"] != 0 {
			t.Errorf("gen1 counts %v, want 3 migrated, 0 drained", c)
		}
	})
}
