//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// fullUpgradeAddrs are the listeners' addresses (port 0 the first time).
type fullUpgradeAddrs struct{ web, tls, tcp, rpc string }

// fullUpgradeConfig serves h1/h2c/gRPC on web, HTTP/1.1 and h2 over TLS,
// a tcp_proxy echo and bolt; extra adds a listener (a changed config).
func fullUpgradeConfig(tr string, a fullUpgradeAddrs, certDir, up, grpcUp, echo, boltUp string, extra bool) string {
	ex := ""
	if extra {
		ex = "\n  - {name: extra, address: \"127.0.0.3:0\", http_proxy: {}}"
	}
	return fmt.Sprintf(`transport: %s
drain_timeout: 20s
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: %q, http_proxy: {idle_timeout: 30s}}
  - name: tls
    address: %q
    tls: {certificates: [{cert_file: %q, key_file: %q}]}
    http_proxy: {idle_timeout: 30s}
  - {name: tcp, address: %q, tcp_proxy: {cluster: echo}}
  - {name: rpc, address: %q, http_proxy: {}}%s
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /grpc.testing.TestService/, cluster: grpc}
      - {prefix: /svc.bolt/, cluster: bolt}
      - {prefix: /, cluster: up}
clusters:
  - {name: up, connect_timeout: 1s, hosts: [{address: %q}]}
  - {name: grpc, connect_timeout: 1s, protocol: http2, hosts: [{address: %q}]}
  - {name: echo, connect_timeout: 1s, hosts: [{address: %q}]}
  - {name: bolt, connect_timeout: 1s, protocol: bolt, hosts: [{address: %q}]}
`, tr, a.web, a.tls, filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem"), a.tcp, a.rpc, ex,
		up, grpcUp, echo, boltUp)
}

// dialCounting counts the connections a client opens.
func dialCounting(n *atomicCounter) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.inc()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// boltLoad sends bolt requests one after another on one connection
// (reopened only if the proxy closes it between requests), until ctx ends.
func boltLoad(ctx context.Context, wg *sync.WaitGroup, rec *loadRecorder, addr string, dials *atomicCounter) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		var peer *rpcPeer
		defer func() {
			if peer != nil {
				peer.c.Close()
			}
		}()
		for id := uint64(1); ctx.Err() == nil; id++ {
			start := time.Now()
			if peer == nil {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					rec.record(start, err)
					continue
				}
				dials.inc()
				peer = newPeer(bolt.Codec{}, c)
			}
			peer.c.SetDeadline(time.Now().Add(10 * time.Second))
			err := peer.write(rpcRequest(bolt.Codec{}, id, "svc.bolt", "m", map[string]string{"content": fmt.Sprint(id), "delay-ms": "1"}))
			if err == nil {
				got, rerr := peer.read()
				switch {
				case rerr != nil:
					err = fmt.Errorf("bolt request %d: %w", id, rerr)
				case got.ID != id || responseBody(bolt.Codec{}, got) != fmt.Sprintf("bolt:svc.bolt/m/%d", id):
					err = fmt.Errorf("bolt request %d: answer %d %q", id, got.ID, responseBody(bolt.Codec{}, got))
				}
			}
			if err != nil {
				peer.c.Close()
				peer = nil
			}
			rec.record(start, err)
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

// grpcLoad runs unary and server-streaming calls until ctx ends.
func grpcLoad(ctx context.Context, wg *sync.WaitGroup, rec *loadRecorder, c testpb.TestServiceClient) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			start := time.Now()
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := func() error {
				r, err := c.UnaryCall(cctx, &testpb.SimpleRequest{ResponseSize: 100})
				if err != nil {
					return fmt.Errorf("grpc unary: %w", err)
				}
				if len(r.GetPayload().GetBody()) != 100 {
					return fmt.Errorf("grpc unary: %d bytes", len(r.GetPayload().GetBody()))
				}
				req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20}, {Size: 30}}}
				st, err := c.StreamingOutputCall(cctx, req)
				if err != nil {
					return fmt.Errorf("grpc server stream: %w", err)
				}
				for i := 1; ; i++ {
					m, err := st.Recv()
					if errors.Is(err, io.EOF) && i == 4 {
						return nil
					}
					if err != nil || len(m.GetPayload().GetBody()) != 10*i {
						return fmt.Errorf("grpc server stream message %d: %v", i, err)
					}
				}
			}()
			cancel()
			rec.record(start, err)
			time.Sleep(3 * time.Millisecond)
		}
	}()
}

// grpcLongStream is one bidirectional stream for the whole test: a message
// every few milliseconds, each answer checked, ended when stop closes.
func grpcLongStream(t *testing.T, c testpb.TestServiceClient, stop <-chan struct{}) <-chan error {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		defer cancel()
		for i := 1; ; i++ {
			select {
			case <-stop:
				st.CloseSend()
				if _, err := st.Recv(); !errors.Is(err, io.EOF) {
					res <- fmt.Errorf("grpc long stream: end: %v", err)
					return
				}
				res <- nil
				return
			case <-time.After(5 * time.Millisecond):
			}
			size := int32(i%1000 + 1)
			if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
				res <- fmt.Errorf("grpc long stream: send %d: %v", i, err)
				return
			}
			m, err := st.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != int(size) {
				res <- fmt.Errorf("grpc long stream: message %d: %v", i, err)
				return
			}
		}
	}()
	return res
}

// TestHotUpgradeFiveUnderLoad: under HTTP/1.1 keep-alive, h2c, TLS (h1 and
// h2), gRPC (unary, server streaming, one long bidirectional stream), bolt
// and a long tcp_proxy stream, five upgrades in a row, each a new binary
// path, one adding a listener and the next removing it, then a failing
// binary: no request fails, no connection is reset, the long streams are
// byte-exact, HTTP/1.1 and bolt connections migrate (the clients never
// reconnect) and the counts agree on both sides.
func TestHotUpgradeFiveUnderLoad(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		if tr == "dpdk" {
			t.Skip("dpdk refuses hot upgrade (one process owns the port)")
		}
		migrates := tr != "sockmap" // sockmap drains its connections
		dir := t.TempDir()
		sock := filepath.Join(dir, "upgrade.sock")
		if err := writeCerts(dir, []string{"localhost", "127.0.0.1"}, "ecdsa", time.Hour); err != nil {
			t.Fatal(err)
		}
		caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		_, grpcUp := startGRPCServer(t)
		echo := rawUpstream(t, func(c net.Conn) {
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		})
		boltUp := startRPCServer(t, "bolt", bolt.Codec{})
		cfg := func(a fullUpgradeAddrs, extra bool) string {
			return fullUpgradeConfig(tr, a, dir, up.addr, grpcUp, echo, boltUp.addr, extra)
		}
		gen1 := startProxy(t, cfg(fullUpgradeAddrs{"127.0.0.1:0", "127.0.0.4:0", "127.0.0.2:0", "127.0.0.5:0"}, false), "--upgrade-socket", sock)
		a := fullUpgradeAddrs{gen1.addr("web"), gen1.addr("tls"), gen1.addr("tcp"), gen1.addr("rpc")}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		rec := &loadRecorder{}
		var h1Dials, boltDials atomicCounter
		for range 4 {
			c := h1Client()
			c.Transport.(*http.Transport).DialContext = dialCounting(&h1Dials)
			httpLoad(ctx, &wg, rec, c, "http://"+a.web+"/h1", 2*time.Millisecond)
		}
		httpLoad(ctx, &wg, rec, h2cClient(), "http://"+a.web+"/h2", 2*time.Millisecond)
		tlsConf := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		httpLoad(ctx, &wg, rec, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}, "https://"+a.tls+"/tls1", 2*time.Millisecond)
		httpLoad(ctx, &wg, rec, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf.Clone(), ForceAttemptHTTP2: true}}, "https://"+a.tls+"/tls2", 2*time.Millisecond)
		gc := grpcClient(t, a.web)
		grpcLoad(ctx, &wg, rec, gc)
		if migrates {
			boltLoad(ctx, &wg, rec, a.rpc, &boltDials)
		}
		stop := make(chan struct{})
		tcpDone := tcpStream(t, a.tcp, stop)
		grpcDone := grpcLongStream(t, gc, stop)
		time.Sleep(300 * time.Millisecond)

		extra := []bool{false, true, false, false, false}
		procs := []*proc{gen1}
		var windows [][2]time.Time
		var takeover []time.Duration
		for i, ex := range extra {
			old := procs[len(procs)-1]
			start := time.Now()
			next := startProxyBin(t, copyBinary(t, dir, i+2), cfg(a, ex), "--upgrade-from", sock)
			procs = append(procs, next)
			// The four traffic listeners; an extra one is bound anew, or
			// dropped (not adopted) by the generation after it.
			if got := next.stat(`upgrade_listeners_passed{direction="in"}`); got != 4 {
				t.Errorf("gen%d adopted %d listeners, want 4", i+2, got)
			}
			if ex {
				if code, body := getStatus(t, "http://"+next.addr("extra")+"/"); code != 200 || body != "ok" {
					t.Errorf("the added listener answered %d %q", code, body)
				}
			}
			if i == 0 {
				// A reload of a process that handed over is refused, with
				// the reason (the new process serves the config now).
				gen1.cmd.Process.Signal(syscall.SIGHUP)
				waitFor(t, 10*time.Second, "the old process refusing a reload", func() bool {
					return strings.Contains(gen1.logs(), "reload refused") && strings.Contains(gen1.logs(), "handed over to a new one")
				})
			}
			if old != gen1 { // gen1 keeps the long streams until the end
				end := waitExit(t, old, 30*time.Second)
				windows = append(windows, [2]time.Time{start, end})
				takeover = append(takeover, end.Sub(start))
			} else {
				windows = append(windows, [2]time.Time{start, time.Now().Add(300 * time.Millisecond)})
			}
			time.Sleep(300 * time.Millisecond)
		}
		last := procs[len(procs)-1]

		// A new binary that cannot start: the last generation serves on.
		bad := writeTemp(t, cfg(a, false)+"bogus_key: 1\n")
		out, err := exec.Command(copyBinary(t, dir, 9), "run", "-c", bad, "--upgrade-from", sock).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "bogus_key") {
			t.Errorf("bad new binary: %v\n%s", err, out)
		}
		if got := last.stat("upgrade_failures"); got != 1 {
			t.Errorf("upgrade_failures %d after a failed new binary, want 1", got)
		}
		time.Sleep(300 * time.Millisecond)

		close(stop)
		for _, ch := range []<-chan error{tcpDone, grpcDone} {
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}
		cancel()
		wg.Wait()
		waitExit(t, gen1, 30*time.Second)

		for i, p := range procs[:len(procs)-1] {
			c := doneCounts(t, p)
			if c["failures"] != 0 || c["passed"] < 4 {
				t.Errorf("gen%d final counts %v", i+1, c)
			}
			// h1 x4 and bolt move; h2c, gRPC and TLS drain.
			if migrates && c["migrated"] < 5 {
				t.Errorf("gen%d migrated %d connections, want >= 5 (%v)", i+1, c["migrated"], c)
			}
			if c["drained"] < 3 {
				t.Errorf("gen%d drained %d connections, want >= 3 (h2c, gRPC, TLS)", i+1, c["drained"])
			}
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
		}
		if migrates && (h1Dials.get() != 4 || boltDials.get() != 1) {
			t.Errorf("over 5 upgrades the 4 HTTP/1.1 clients opened %d connections and bolt %d (want 4 and 1: migrated)", h1Dials.get(), boltDials.get())
		}
		rec.mu.Lock()
		ok, errs := rec.ok, rec.errs
		rec.mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("%d of %d requests failed; first: %v", len(errs), ok+len(errs), errs[:min(len(errs), 5)])
		}
		in, nIn := rec.p99(windows, true)
		outP, nOut := rec.p99(windows, false)
		t.Logf("%s: %d requests, %d failed; p99 during upgrades %v (%d), otherwise %v (%d); new binary start to old exit %v",
			tr, ok+len(errs), len(errs), in, nIn, outP, nOut, takeover)
	})
}
