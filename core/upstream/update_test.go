package upstream

import (
	"sync"
	"testing"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/http1"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

var registerUpdateLBs sync.Once

// TestSetHostsKeepsAndReplaces: hosts that stay keep their object (pool,
// health, stats); a changed weight or metadata makes a new host; SetLB
// keeps the hosts.
func TestSetHostsKeepsAndReplaces(t *testing.T) {
	tr, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	registerUpdateLBs.Do(func() {
		RegisterLB("update-test-rr", NewRoundRobin)
		RegisterLB("update-test-random", NewRandom)
	})
	c, err := NewCluster(ClusterConfig{Name: "c", LB: "update-test-rr", Codec: http1.Codec{}.NewClient(&stream.ClientOptions{}),
		Hosts: []HostConfig{{Address: "127.0.0.1:1", Weight: 1}, {Address: "127.0.0.1:2", Weight: 1}, {Address: "127.0.0.1:3", Weight: 1}}}, tr)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]*Host{}
	for _, h := range c.Hosts() {
		before[h.Address] = h
	}
	c.SetHealthy(before["127.0.0.1:1"], false)
	added, removed := c.SetHosts([]HostConfig{
		{Address: "127.0.0.1:1", Weight: 1},                                        // same
		{Address: "127.0.0.1:2", Weight: 5},                                        // weight changed
		{Address: "127.0.0.1:3", Weight: 1, Metadata: map[string]string{"a": "b"}}, // metadata changed
		{Address: "127.0.0.1:4", Weight: 1},                                        // new
	})
	if added != 3 || removed != 2 {
		t.Fatalf("added %d removed %d, want 3 and 2", added, removed)
	}
	after := map[string]*Host{}
	for _, h := range c.Hosts() {
		after[h.Address] = h
	}
	if after["127.0.0.1:1"] != before["127.0.0.1:1"] || after["127.0.0.1:1"].Healthy() {
		t.Fatal("a kept host lost its object or its health")
	}
	if after["127.0.0.1:2"] == before["127.0.0.1:2"] || after["127.0.0.1:2"].Weight != 5 || after["127.0.0.1:3"].Metadata["a"] != "b" {
		t.Fatal("changed hosts not replaced")
	}
	f, name, err := LBFactoryFor("update-test-random", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLB(f, name)
	if c.LBInfo() != "update-test-random" || c.Hosts()[0] != after["127.0.0.1:1"] {
		t.Fatalf("SetLB: %q", c.LBInfo())
	}
	if _, _, err := LBFactoryFor("nope", nil); err == nil {
		t.Fatal("unknown policy accepted")
	}
}
