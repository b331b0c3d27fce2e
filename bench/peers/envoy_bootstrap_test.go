package peers

import (
	"testing"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/xds"
)

// TestEnvoyConfigsAreValidBootstraps: with no Envoy binary here, every
// envoy.yaml the lab generates is unmarshalled into Envoy's bootstrap
// proto and checked with its generated Validate, then loaded by proxylab
// as a bootstrap (one file can drive both).
func TestEnvoyConfigsAreValidBootstraps(t *testing.T) {
	known := config.Known{Transports: []string{"netpoll"}, DefaultTransport: "netpoll", DefaultEngine: "gotls", LBs: []string{"round_robin"},
		DefaultLB: "round_robin", Engines: []string{"gotls"}, Codecs: codecs, DefaultProtocol: "http1"}
	for name, s := range scenarios {
		out, err := Envoy(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := xds.ParseBootstrap([]byte(out)); err != nil {
			t.Errorf("%s: Envoy would refuse its config: %v\n%s", name, err, out)
			continue
		}
		if _, err := xds.LoadBootstrap([]byte(out), known, xds.DirStore{Dir: t.TempDir()}); err != nil {
			t.Errorf("%s: proxylab does not run the Envoy config: %v", name, err)
		}
	}
}
