package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/proxylab/proxylab/core/xds/xdstest"
)

// envoyBootstrap is an Envoy v3 bootstrap: a static listener with inline
// routes to a static cluster, and ADS (apiType) at the control plane.
func envoyBootstrap(upstream, controlPlane, apiType string) string {
	up := strings.Split(upstream, ":")
	cp := strings.Split(controlPlane, ":")
	return fmt.Sprintf(`node:
  id: boot-node
  cluster: edge
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 0}
static_resources:
  listeners:
  - name: static_web
    address:
      socket_address: {address: 127.0.0.1, port_value: 0}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: static_a}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: static_a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: static_a
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: %s, port_value: %s}
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: xds_cluster
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: %s, port_value: %s}
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    grpc_services:
    - envoy_grpc: {cluster_name: xds_cluster}
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
`, up[0], up[1], cp[0], cp[1], apiType)
}

// TestEnvoyBootstrap: `proxylab run -c envoy.yaml` serves the static
// resources of an Envoy bootstrap and connects to its ADS as its node.
func TestEnvoyBootstrap(t *testing.T) {
	for _, api := range []string{"GRPC", "DELTA_GRPC"} {
		t.Run(api, func(t *testing.T) {
			cp := xdstest.New(t)
			a, b := startUpstream(t, named("A")), startUpstream(t, named("B"))
			web := freePort(t)
			cp.Set(t, "boot-node", "v1", map[resource.Type][]types.Resource{
				resource.ClusterType:  {xdstest.EDSCluster("dyn")},
				resource.EndpointType: {xdstest.Endpoints("dyn", b.addr)},
				resource.ListenerType: {xdstest.HTTPListener("dyn_web", web, "dyn_routes")},
				resource.RouteType:    {xdstest.Routes("dyn_routes", xdstest.Prefix("/", "dyn"))},
			})
			boot := envoyBootstrap(a.addr, cp.Addr, api)
			out, err := exec.Command(binPath, "validate", "-c", writeTemp(t, boot)).CombinedOutput()
			if err != nil {
				t.Fatalf("validate: %v\n%s", err, out)
			}
			p := startProxy(t, boot)
			if got := body(h1Client(), "http://"+p.addr("static_web")+"/"); got != "A HTTP/1.1" {
				t.Fatalf("static listener: %q", got)
			}
			eventually(t, "the dynamic listener", func() bool { return body(h1Client(), "http://"+web+"/") == "B HTTP/1.1" })
			// The resources are keyed by the bootstrap's node id: they arrived.
			if want := api == "DELTA_GRPC"; cp.Requests()[0].Delta != want {
				t.Fatalf("delta stream %v, want %v", cp.Requests()[0].Delta, want)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		bad := strings.Replace(envoyBootstrap("127.0.0.1:1", "127.0.0.1:2", "GRPC"), "type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: static_a",
			"type: LOGICAL_DNS\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: static_a", 1)
		out, err := exec.Command(binPath, "validate", "-c", writeTemp(t, bad)).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "static_resources.clusters[0].type") {
			t.Fatalf("a LOGICAL_DNS static cluster must be refused naming the field: %v\n%s", err, out)
		}
	})
}
