package config

import (
	"errors"
	"fmt"
	"testing"
)

// TestRouteProtocolMismatch: a route that sends a listener's requests to a
// cluster speaking none of the listener's codecs is refused with its path;
// codec auto accepts any cluster (refused per request at run time).
func TestRouteProtocolMismatch(t *testing.T) {
	k := known
	k.Codecs = append(append([]Codec{}, rpcCodecs...), known.Codecs...)
	cfg := func(codec, vhosts, route string) string {
		return fmt.Sprintf(`
listeners:
  - {name: rpc, address: "127.0.0.1:9000", http_proxy: {codec: %s%s}}
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /ok, cluster: %s}
      - %s
  - name: other
    domains: [other]
    routes:
      - {prefix: /, cluster: web}
clusters:
  - {name: web, hosts: [{address: "127.0.0.1:1"}]}
  - {name: web2, protocol: http2, hosts: [{address: "127.0.0.1:1"}]}
  - {name: sofa, protocol: bolt, hosts: [{address: "127.0.0.1:2"}]}
  - {name: dub, protocol: dubbo, hosts: [{address: "127.0.0.1:3"}]}
`, codec, vhosts, map[string]string{"dubbo": "dub", "bolt": "sofa"}[codec]+map[string]string{"http1": "web", "http2": "web2", "auto": "web"}[codec], route)
	}
	for _, tc := range []struct {
		name, codec, vhosts, route string
		want                       string // "" means valid
	}{
		{"dubbo to http1", "dubbo", ", virtual_hosts: [all]", "{prefix: /, cluster: web}",
			`routes[0].routes[1].cluster: cluster "web" speaks http1, listener "rpc" codec dubbo`},
		{"dubbo to bolt (both route on service)", "dubbo", ", virtual_hosts: [all]", `{prefix: /, headers: [{name: service, exact: s}], cluster: sofa}`,
			`routes[0].routes[1].cluster: cluster "sofa" speaks bolt, listener "rpc" codec dubbo`},
		{"bolt to http2 by weight", "bolt", ", virtual_hosts: [all]", "{prefix: /, weighted_clusters: [{name: sofa, weight: 1}, {name: web2, weight: 1}]}",
			`routes[0].routes[1].weighted_clusters[1].name: cluster "web2" speaks http2, listener "rpc" codec bolt`},
		{"http1 to dubbo", "http1", "", "{prefix: /, cluster: dub}",
			`routes[0].routes[1].cluster: cluster "dub" speaks dubbo, listener "rpc" codec http1`},
		{"http2 mirrored to bolt", "http2", "", "{prefix: /, cluster: web, request_mirror_policies: [{cluster: sofa}]}",
			`routes[0].routes[1].request_mirror_policies[0].cluster: cluster "sofa" speaks bolt, listener "rpc" codec http2`},
		{"bolt with an unreachable http vhost", "bolt", ", virtual_hosts: [all]", "{prefix: /, cluster: sofa}", ""},
		{"http1 to http2", "http1", "", "{prefix: /, cluster: web2}", ""},
		{"auto mixes", "auto", "", `{prefix: /, headers: [{name: service, exact: s}], cluster: dub}`, ""},
		{"cluster_header is checked per request", "dubbo", ", virtual_hosts: [all]", "{prefix: /, cluster_header: x-cluster}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(cfg(tc.codec, tc.vhosts, tc.route)), k)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("accepted, want %q", tc.want)
			}
			if len(es) != 1 || es[0].Error() != tc.want {
				t.Fatalf("errors:\n%v\nwant exactly %q", err, tc.want)
			}
		})
	}
}
