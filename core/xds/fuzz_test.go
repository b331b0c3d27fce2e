package xds

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/proxylab/proxylab/core/config"
)

// FuzzTranslate feeds arbitrary bytes as each resource type through the
// translator, the assembly and the validation: errors are fine, a panic
// is not.
func FuzzTranslate(f *testing.F) {
	for _, m := range []proto.Message{
		httpListener(f, "l", "127.0.0.1", 0, "rc", nil),
		httpListener(f, "l", "127.0.0.1", 0, "", routeCfg("in", prefixRoute("/", "c"))),
		routeCfg("rc", prefixRoute("/", "c")), edsCluster("c"), cla("c", "127.0.0.1:1"),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	base, err := config.ParseWith([]byte("listeners: []\n"), testKnown(), config.BuildOptions{Dynamic: true})
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		md := newModel()
		md.put(ClusterType, "c", edsCluster("c"), nil)
		md.put(EndpointType, "c", cla("c", "127.0.0.1:1"), nil)
		for _, typ := range order {
			msg, _ := newMessage(typ)
			if proto.Unmarshal(data, msg) != nil {
				continue
			}
			md.put(typ, "x", msg, DirStore{Dir: dir})
		}
		a := md.assemble(base)
		if err := config.Build(a.cfg, testKnown(), config.BuildOptions{Dynamic: true}); err != nil {
			_ = a.explain(err)
		}
	})
}

// FuzzBootstrap: any file given as an Envoy bootstrap is loaded or
// refused with an error, never a panic.
func FuzzBootstrap(f *testing.F) {
	f.Add([]byte("static_resources: {}\n"))
	f.Add([]byte("static_resources:\n  clusters:\n  - name: c\n    type: STATIC\n    load_assignment:\n      cluster_name: c\n      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]\n"))
	f.Add([]byte("dynamic_resources:\n  ads_config: {api_type: GRPC, grpc_services: [{google_grpc: {target_uri: x:1, stat_prefix: s}}]}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if !IsBootstrap(data) {
			return
		}
		LoadBootstrap(data, testKnown(), DirStore{Dir: dir})
	})
}
