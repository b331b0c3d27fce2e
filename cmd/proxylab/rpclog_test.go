package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
)

// TestRPCAccessLog: bolt calls are logged by the listener's access log with
// the same operators: the protocol as :METHOD, /service/method as :PATH, the
// status, and a request id carried in the bolt header map.
func TestRPCAccessLog(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		codec := bolt.Codec{}
		a, b := startRPCServer(t, "A", codec), startRPCServer(t, "B", codec)
		logPath := filepath.Join(t.TempDir(), "rpc.log")
		cfg := strings.Replace(rpcConfig(tr, codec.Name(), a.addr, b.addr), "http_proxy: {}",
			"http_proxy: {access_log: {path: "+logPath+", format: '%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %REQ(X-REQUEST-ID)%'}}", 1)
		p := startProxy(t, cfg)
		c, err := net.DialTimeout("tcp", p.addr("rpc"), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		peer := newPeer(codec, c)
		if err := peer.write(rpcRequest(codec, 7, "svc.A", "echo", map[string]string{"content": "x", "x-request-id": "rid-7"})); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.read(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "rpc access log line", func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "bolt /svc.A/echo 200 rid-7\n")
		})
	})
}
