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

func reusePortConfig(tr, addr, upstream string) string {
	return fmt.Sprintf(`transport: %s
reuse_port: true
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: %q, http_proxy: {}}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, addr, upstream)
}

// TestReusePortShared: two processes with reuse_port share a port, both
// accepting; a hot upgrade of one keeps the pair sharing it.
func TestReusePortShared(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		if tr == "dpdk" {
			t.Skip("dpdk refuses reuse_port")
		}
		dir := t.TempDir()
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		a := startProxy(t, reusePortConfig(tr, "127.0.0.1:0", up.addr), "--upgrade-socket", filepath.Join(dir, "a.sock"))
		addr := a.addr("web")
		b := startProxy(t, reusePortConfig(tr, addr, up.addr), "--upgrade-socket", filepath.Join(dir, "b.sock"))
		spread := func(procs ...*proc) {
			t.Helper()
			before := make([]int, len(procs))
			for i, p := range procs {
				before[i] = p.stat(`listener_downstream_cx_total{listener="web"}`)
			}
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for range 40 {
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Fatalf("%d %q", resp.StatusCode, body)
				}
			}
			total := 0
			for i, p := range procs {
				n := p.stat(`listener_downstream_cx_total{listener="web"}`) - before[i]
				if n == 0 {
					t.Errorf("process %d accepted none of 40 connections", i)
				}
				total += n
			}
			if total != 40 {
				t.Errorf("the processes accepted %d connections, want 40", total)
			}
		}
		spread(a, b)
		a2 := startProxyBin(t, copyBinary(t, dir, 2), reusePortConfig(tr, addr, up.addr), "--upgrade-from", filepath.Join(dir, "a.sock"))
		waitExit(t, a, 20*time.Second)
		spread(a2, b)
	})
}
