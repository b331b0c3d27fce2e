package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var memRE = regexp.MustCompile(`msg=memory rss_bytes=(\d+) heap_inuse_bytes=(\d+) stack_inuse_bytes=(\d+) sys_bytes=\d+ goroutines=(\d+)`)

// memory asks the proxy for a post-GC memory line (SIGUSR1) and parses it.
func (p *proc) memory() (rss, heap, stack, goroutines int) {
	p.t.Helper()
	before := len(memRE.FindAllString(p.logs(), -1))
	p.cmd.Process.Signal(syscall.SIGUSR1)
	for i := 0; i < 200; i++ {
		if all := memRE.FindAllStringSubmatch(p.logs(), -1); len(all) > before {
			m := all[len(all)-1]
			atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
			return atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4])
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatal("no memory line after SIGUSR1")
	return
}

// TestManyIdleKeepAliveConnections holds 8,000 keep-alive connections that
// have each made one request, while other connections keep traffic flowing,
// and reports the proxy's memory per idle connection.
func TestManyIdleKeepAliveConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 8,000 connections")
	}
	const idle = 8000
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}))
		p := startProxy(t, strings.Replace(httpConfig(tr, []string{up.addr}, "", ""), "idle_timeout: 30s", "idle_timeout: 120s", 1), "--cpus", "0")
		addr := p.addr("http")
		req := []byte("GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
		oneRequest := func(c net.Conn, r *bufio.Reader) error {
			if _, err := c.Write(req); err != nil {
				return err
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
		// Warm up so pools and the upstream connection exist before the baseline.
		for i := 0; i < 200; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := oneRequest(c, bufio.NewReader(c)); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
		rss0, heap0, stack0, g0 := p.memory()

		conns := make([]net.Conn, idle)
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err == nil {
						c.SetDeadline(time.Now().Add(30 * time.Second))
						err = oneRequest(c, bufio.NewReaderSize(c, 512))
					}
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("connection %d: %w", i, err)
						}
						mu.Unlock()
						continue
					}
					conns[i] = c
				}
			}()
		}
		for i := 0; i < idle; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		if firstErr != nil {
			t.Fatal(firstErr)
		}

		// Steady traffic on other connections while the 8,000 sit idle.
		var served, failed int
		deadline := time.Now().Add(2 * time.Second)
		var tw sync.WaitGroup
		var tmu sync.Mutex
		for w := 0; w < 8; w++ {
			tw.Add(1)
			go func() {
				defer tw.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					tmu.Lock()
					failed++
					tmu.Unlock()
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				for time.Now().Before(deadline) {
					err := oneRequest(c, r)
					tmu.Lock()
					if err != nil {
						failed++
					} else {
						served++
					}
					tmu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
		tw.Wait()
		if failed > 0 || served == 0 {
			t.Fatalf("steady traffic beside idle connections: %d served, %d failed", served, failed)
		}
		time.Sleep(200 * time.Millisecond)
		rss1, heap1, stack1, g1 := p.memory()
		perConn := func(a, b int) float64 { return float64(b-a) / idle / 1024 }
		t.Logf("%s: %d idle keep-alive connections; per connection: RSS %.2f KiB, heap %.2f KiB, stacks %.2f KiB; goroutines %d -> %d; %d requests served meanwhile",
			tr, idle, perConn(rss0, rss1), perConn(heap0, heap1), perConn(stack0, stack1), g0, g1, served)
		// Every connection is still usable after sitting idle.
		for _, i := range []int{0, idle / 2, idle - 1} {
			c := conns[i]
			if err := oneRequest(c, bufio.NewReader(c)); err != nil {
				t.Fatalf("idle connection %d unusable: %v", i, err)
			}
		}
		if tr == "rawepoll" {
			if g1-g0 > 10 {
				t.Errorf("rawepoll holds goroutines per idle connection: %d -> %d", g0, g1)
			}
			if kib := perConn(rss0, rss1); kib > 1.5 {
				t.Errorf("rawepoll idle connection costs %.2f KiB of RSS, target 1.5", kib)
			}
		}
	})
}
