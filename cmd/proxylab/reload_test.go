package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reloadConfig is the config the reload tests rewrite: listener web (fixed
// address, extra http_proxy settings), listener moving (its address
// changes), /v answered directly with version, everything else to cluster
// up over hosts.
func reloadConfig(tr, web, webExtra, moving, version string, hosts []string) string {
	var hs strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&hs, "      - {address: %q}\n", h)
	}
	return fmt.Sprintf(`transport: %s
drain_timeout: 5s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: %q
    http_proxy: {idle_timeout: 30s%s}
  - name: moving
    address: %q
    http_proxy: {}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {path: /v, direct_response: {status: 200, body: %s}}
      - {prefix: /, cluster: up}
clusters:
  - name: up
    connect_timeout: 1s
    hosts:
%s`, tr, web, webExtra, moving, version, hs.String())
}

// loopbackPort is a free loopback address (free now).
func loopbackPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// namedHandler answers with name.
func namedHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}

// steadyLoad runs workers, each on its own client (so its own connection):
// half HTTP/1.1 keep-alive, half h2c. Every request records the phase it
// started in and which upstream answered.
type steadyLoad struct {
	ok, failed atomic.Int64
	phase      atomic.Int32
	mu         sync.Mutex
	errs       []string
	byPhase    map[int32]map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, url string, workers int) *steadyLoad {
	l := &steadyLoad{stop: make(chan struct{}), byPhase: map[int32]map[string]int{}}
	for i := range workers {
		cl := h1Client()
		if i%2 == 1 {
			cl = h2cClient()
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer cl.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ph := l.phase.Load()
				resp, err := cl.Get(url)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					l.fail(fmt.Sprintf("%s %d %q %v", resp.Proto, resp.StatusCode, b, err))
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				if l.byPhase[ph] == nil {
					l.byPhase[ph] = map[string]int{}
				}
				l.byPhase[ph][string(b)]++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *steadyLoad) fail(e string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, e)
	}
	l.mu.Unlock()
}

// waitServed waits until n more requests succeeded.
func (l *steadyLoad) waitServed(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled at %d ok, %d failed: %v", l.ok.Load(), l.failed.Load(), l.errs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *steadyLoad) seen(ph int32) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.byPhase[ph] {
		out[k] = v
	}
	return out
}

// waitLog waits until the log holds n lines containing s.
func (p *proc) waitLog(s string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(p.logs(), s) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("no %d× %q in the log:\n%s", n, s, p.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// configPath is the file startProxy wrote (run -c FILE).
func (p *proc) configPath() string { return p.cmd.Args[3] }

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestReloadUnderLoad reloads twice under steady HTTP/1.1 and h2c load (50
// connections): by SIGHUP (listener moving to a new address, every host of
// the cluster changed, a route changed) and by POST /reload (listener web
// changed on its socket, hosts changed back, the route again); then a bad
// file is refused with its field paths while the config in force serves.
// Not one request may fail.
func TestReloadUnderLoad(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		old1, old2 := startUpstream(t, namedHandler("old1")), startUpstream(t, namedHandler("old2"))
		new1, new2 := startUpstream(t, namedHandler("new1")), startUpstream(t, namedHandler("new2"))
		web, moving, moved := loopbackPort(t), loopbackPort(t), loopbackPort(t)
		p := startProxy(t, reloadConfig(tr, web, "", moving, "v1", []string{old1.addr, old2.addr}))
		adm := adminClient{t: t, base: "http://" + p.adminAddr()}
		if got := getBody(t, "http://"+web+"/v"); got != "v1" {
			t.Fatalf("/v: %q", got)
		}
		load := startLoad(t, "http://"+web+"/", 50)
		defer func() {
			close(load.stop)
			load.wg.Wait()
		}()
		load.waitServed(t, 500)

		// 1. SIGHUP: moving rebinds, all hosts change, the route changes.
		write := func(cfg string) {
			if err := os.WriteFile(p.configPath(), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(reloadConfig(tr, web, "", moved, "v2", []string{new1.addr, new2.addr}))
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(`msg="config reloaded" trigger=SIGHUP`, 1)
		load.phase.Store(1)
		if got := getBody(t, "http://"+web+"/v"); got != "v2" {
			t.Fatalf("/v after the route change: %q", got)
		}
		if got := getBody(t, "http://"+moved+"/"); !strings.HasPrefix(got, "new") {
			t.Fatalf("moved listener: %q", got)
		}
		if c, err := net.DialTimeout("tcp", moving, time.Second); err == nil {
			c.Close()
			t.Fatal("the old address of moving still accepts")
		}
		load.waitServed(t, 500)
		for name := range load.seen(1) {
			if !strings.HasPrefix(name, "new") {
				t.Fatalf("a request started after the reload went to %q", name)
			}
		}

		// 2. POST /reload: web changes on its socket (its connections
		// drain: Connection: close, GOAWAY), hosts back, route again.
		write(reloadConfig(tr, web, ", response_headers_to_add: [{name: x-config, value: three}]", moved, "v3", []string{old1.addr, old2.addr}))
		code, body := adm.do("POST", "/reload")
		if code != 200 || !strings.Contains(body, "reloaded") {
			t.Fatalf("POST /reload: %d %s", code, body)
		}
		load.phase.Store(2)
		resp, err := http.Get("http://" + web + "/v")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "v3" || resp.Header.Get("x-config") != "three" {
			t.Fatalf("after POST /reload: %q %v", b, resp.Header)
		}
		load.waitServed(t, 500)
		for name := range load.seen(2) {
			if !strings.HasPrefix(name, "old") {
				t.Fatalf("a request started after the reload went to %q", name)
			}
		}

		// 3. Six more, alternating triggers, web's settings and the hosts,
		// each while requests are in flight on drained connections.
		for i := range 6 {
			extra, hosts := "", []string{new1.addr, new2.addr}
			if i%2 == 1 {
				extra, hosts = fmt.Sprintf(", response_headers_to_add: [{name: x-round, value: r%d}]", i), []string{old1.addr, new2.addr}
			}
			write(reloadConfig(tr, web, extra, moved, "v3", hosts))
			if i%2 == 0 {
				p.cmd.Process.Signal(syscall.SIGHUP)
				p.waitLog(`msg="config reloaded" trigger=SIGHUP`, 2+i/2)
			} else if code, body := adm.do("POST", "/reload"); code != 200 {
				t.Fatalf("POST /reload: %d %s", code, body)
			}
			load.waitServed(t, 200)
		}

		// 4. A bad file is refused with its field paths; v3 keeps serving.
		write(strings.Replace(reloadConfig(tr, web, "", moved, "v4", []string{new1.addr}), "cluster: up", "cluster: nope", 1))
		code, body = adm.do("POST", "/reload")
		if code != 400 || !strings.Contains(body, `routes[0].routes[1].cluster: unknown cluster "nope"`) {
			t.Fatalf("bad file: %d %s", code, body)
		}
		p.waitLog(`routes[0].routes[1].cluster: unknown cluster`, 1)
		if got := getBody(t, "http://"+web+"/v"); got != "v3" {
			t.Fatalf("after a refused reload: %q", got)
		}
		load.waitServed(t, 500)

		close(load.stop)
		load.wg.Wait()
		load.stop = make(chan struct{})
		if n := load.failed.Load(); n > 0 {
			t.Fatalf("%d of %d requests failed during reloads: %v", n, n+load.ok.Load(), load.errs)
		}
		t.Logf("%d requests, 0 failed", load.ok.Load())
		fams := adm.scrape()
		for name, want := range map[string]float64{"proxylab_config_reload_attempts_total": 9, "proxylab_config_reload_success_total": 8,
			"proxylab_config_reload_failures_total": 1} {
			if got := value(t, fams, name, nil); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if code, dump := adm.do("GET", "/config_dump"); code != 200 || !strings.Contains(dump, "body: v3") {
			t.Fatalf("/config_dump does not show the config in force: %s", dump)
		}
	})
}

// TestReloadRefusesRestartOnly: a change that cannot be made live is
// refused with the reason, and the old config serves on.
func TestReloadRefusesRestartOnly(t *testing.T) {
	up := startUpstream(t, namedHandler("up"))
	web := loopbackPort(t)
	p := startProxy(t, reloadConfig("netpoll", web, "", loopbackPort(t), "v1", []string{up.addr}))
	adm := adminClient{t: t, base: "http://" + p.adminAddr()}
	cfg := reloadConfig("netpoll", web, "", loopbackPort(t), "v2", []string{up.addr})
	cfg = strings.Replace(cfg, "admin: {address: \"127.0.0.1:0\"}", "admin: {address: \"127.0.0.1:1\"}", 1)
	if err := os.WriteFile(p.configPath(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, body := adm.do("POST", "/reload")
	if code != 400 || !strings.Contains(body, "server: admin changed: needs a restart") {
		t.Fatalf("POST /reload: %d %s", code, body)
	}
	if got := getBody(t, "http://"+web+"/v"); got != "v1" {
		t.Fatalf("/v: %q", got)
	}
}

// TestReloadWatch: with --watch, rewriting the file reloads it.
func TestReloadWatch(t *testing.T) {
	up := startUpstream(t, namedHandler("up"))
	web, moving := loopbackPort(t), loopbackPort(t)
	p := startProxy(t, reloadConfig("netpoll", web, "", moving, "v1", []string{up.addr}), "--watch")
	if err := os.WriteFile(p.configPath(), []byte(reloadConfig("netpoll", web, "", moving, "v22", []string{up.addr})), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`msg="config reloaded" trigger=watch`, 1)
	if got := getBody(t, "http://"+web+"/v"); got != "v22" {
		t.Fatalf("/v: %q", got)
	}
}

// TestReloadTLSListener: a TLS listener whose certificate changes by
// reload keeps its socket; its connections (HTTP/1.1 and h2 over TLS, 20
// keep-alive clients) drain with no failed request, and new connections
// get the new certificate.
func TestReloadTLSListener(t *testing.T) {
	p := newPKI(t)
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, namedHandler("up"))
		web := loopbackPort(t)
		cfgFor := func(gen string) string {
			c, k := p.issue(gen+"-"+tr, []string{"localhost"}, nil, false, time.Now().Add(time.Hour))
			return fmt.Sprintf(`transport: %s
drain_timeout: 5s
admin: {address: "127.0.0.1:0"}
listeners:
  - name: web
    address: %q
    tls: {certificates: [{cert_file: %q, key_file: %q}]}
    http_proxy: {}
routes:
  - {name: all, domains: ["*"], routes: [{prefix: /, cluster: up}]}
clusters:
  - {name: up, hosts: [{address: %q}]}
`, tr, web, c, k, up.addr)
		}
		px := startProxy(t, cfgFor("gen1"))
		adm := adminClient{t: t, base: "http://" + px.adminAddr()}
		var ok, failed atomic.Int64
		var seen sync.Map
		var errMu sync.Mutex
		var errs []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 20 {
			tc := &tls.Config{RootCAs: p.pool, ServerName: "localhost"}
			ht := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: w%2 == 1}
			if w%2 == 0 {
				var pr http.Protocols
				pr.SetHTTP1(true)
				ht.Protocols = &pr
			}
			cl := &http.Client{Timeout: 10 * time.Second, Transport: ht}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ht.CloseIdleConnections()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := cl.Get("https://" + web + "/")
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
						errMu.Lock()
						errs = append(errs, fmt.Sprint(err))
						errMu.Unlock()
						continue
					}
					ok.Add(1)
					seen.Store(resp.Proto+" "+resp.TLS.PeerCertificates[0].Subject.CommonName, true)
				}
			}()
		}
		waitOK := func(n int64) {
			for target, deadline := ok.Load()+n, time.Now().Add(20*time.Second); ok.Load() < target; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("load stalled: %d ok, %d failed %v", ok.Load(), failed.Load(), errs)
				}
			}
		}
		waitOK(200)
		if err := os.WriteFile(px.configPath(), []byte(cfgFor("gen2")), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, body := adm.do("POST", "/reload"); code != 200 {
			t.Fatalf("POST /reload: %d %s", code, body)
		}
		waitOK(300)
		close(stop)
		wg.Wait()
		for _, want := range []string{"HTTP/1.1 gen1-", "HTTP/2.0 gen1-", "HTTP/1.1 gen2-", "HTTP/2.0 gen2-"} {
			if _, ok := seen.Load(want + tr); !ok {
				t.Errorf("never saw %s%s", want, tr)
			}
		}
		if failed.Load() != 0 {
			t.Fatalf("%d ok, %d failed: %v", ok.Load(), failed.Load(), errs[:min(len(errs), 5)])
		}
		t.Logf("%d requests over TLS, 0 failed", ok.Load())
	})
}
