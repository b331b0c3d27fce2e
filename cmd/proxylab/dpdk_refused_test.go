//go:build !dpdk

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDPDKRefusedWithoutBuildTag: a binary built without -tags dpdk says
// how to get the transport instead of failing obscurely.
func TestDPDKRefusedWithoutBuildTag(t *testing.T) {
	cfg := "transport: dpdk\ndpdk: {port: net_af_packet0, address: 10.99.0.2/24}\nlisteners:\n  - {name: t, address: \"0.0.0.0:8081\", tcp_proxy: {cluster: c}}\nclusters:\n  - {name: c, hosts: [{address: \"10.99.0.1:9\"}]}\n"
	out, err := exec.Command(binPath, "run", "-c", writeTemp(t, cfg)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "built without DPDK") || !strings.Contains(string(out), "make build-dpdk") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}
