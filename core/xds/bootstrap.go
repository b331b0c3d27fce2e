package xds

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/config"
)

// Bootstrap is an Envoy v3 bootstrap read as proxylab's config: its
// static resources translated into the base, and where its ADS points.
type Bootstrap struct {
	Config *config.Config
	// ADS is the control plane's address ("" without dynamic resources).
	ADS   string
	Delta bool
	Node  *corev3.Node
	// Warnings are the cosmetic fields accepted without effect.
	Warnings []Warning
}

var (
	bootstrapFields = table(&bootstrapv3.Bootstrap{}, fieldTable{"node": supported, "static_resources": supported,
		"dynamic_resources": supported, "admin": supported, "layered_runtime": warned, "stats_config": warned,
		"stats_sinks": warned, "stats_flush_interval": warned, "overload_manager": warned, "cluster_manager": warned,
		"watchdogs": warned, "tracing": warned, "header_prefix": refused, "default_regex_engine": warned,
		"bootstrap_extensions": refused, "hds_config": refused, "node_context_params": warned})
	staticFields = table(&bootstrapv3.Bootstrap_StaticResources{}, fieldTable{"listeners": supported, "clusters": supported, "secrets": supported})
	dynFields    = table(&bootstrapv3.Bootstrap_DynamicResources{}, fieldTable{"ads_config": supported, "lds_config": supported,
		"cds_config": supported, "lds_resources_locator": refused, "cds_resources_locator": refused})
	adminFields   = table(&bootstrapv3.Admin{}, fieldTable{"address": supported, "access_log": warned, "access_log_path": warned, "profile_path": warned, "socket_options": warned})
	apiFields     = table(&corev3.ApiConfigSource{}, fieldTable{"api_type": supported, "transport_api_version": supported, "grpc_services": supported, "set_node_on_first_message_only": warned, "refresh_delay": warned, "request_timeout": warned, "rate_limit_settings": warned, "cluster_names": refused})
	grpcSvcFields = table(&corev3.GrpcService{}, fieldTable{"envoy_grpc": supported, "google_grpc": supported, "timeout": warned, "initial_metadata": refused, "retry_policy": warned})
	nodeFields    = table(&corev3.Node{}, fieldTable{"id": supported, "cluster": supported, "metadata": supported, "locality": supported, "user_agent_name": supported})
)

// IsBootstrap says whether data is an Envoy bootstrap rather than a
// proxylab config: it has static_resources or dynamic_resources at the top.
func IsBootstrap(data []byte) bool {
	var top map[string]any
	if yaml.Unmarshal(data, &top) != nil {
		return false
	}
	_, s := top["static_resources"]
	_, d := top["dynamic_resources"]
	return s || d
}

// ParseBootstrap decodes a bootstrap (YAML or JSON) into Envoy's proto and
// checks it with the proto's generated validation rules, as Envoy would
// before anything else.
func ParseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	js, err := jsonOf(doc)
	if err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	if err := bs.ValidateAll(); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	return &bs, nil
}

// LoadBootstrap reads a bootstrap (YAML or JSON), validates it with the
// generated rules, translates its static resources with the xDS
// translator and builds the result like a file (config.Build). Errors name
// the bootstrap field (a FieldError, an Errors, or a parse error).
func LoadBootstrap(data []byte, known config.Known, files FileStore) (*Bootstrap, error) {
	bs, err := ParseBootstrap(data)
	if err != nil {
		return nil, err
	}
	t := &tr{typ: "Bootstrap", name: "bootstrap", files: files}
	t.check("", bs, bootstrapFields)
	out := &Bootstrap{Node: bs.GetNode()}
	t.check("node", bs.GetNode(), nodeFields)
	cfg := &config.Config{}
	config.SetDefaults(cfg)
	if a := bs.GetAdmin(); a != nil {
		t.check("admin", a, adminFields)
		cfg.Admin = &config.Admin{}
		config.SetDefaults(cfg.Admin)
		if a.GetAddress() != nil {
			cfg.Admin.Address = t.socketAddress("admin.address", a.GetAddress())
		}
	}
	md := newModel()
	sr := bs.GetStaticResources()
	t.check("static_resources", sr, staticFields)
	var errs []*FieldError
	for i, s := range sr.GetSecrets() {
		errs = append(errs, prefixed(md.put(SecretType, s.GetName(), s, files), idx("static_resources.secrets", i))...)
	}
	for i, c := range sr.GetClusters() {
		errs = append(errs, prefixed(md.put(ClusterType, c.GetName(), c, files), idx("static_resources.clusters", i))...)
		if c.GetType() == clusterv3.Cluster_EDS {
			errs = append(errs, &FieldError{Type: "Bootstrap", Resource: "bootstrap", Field: idx("static_resources.clusters", i) + ".type", Msg: "a static cluster cannot take its endpoints from EDS"})
		}
	}
	for i, l := range sr.GetListeners() {
		lt := md.put(ListenerType, l.GetName(), l, files)
		errs = append(errs, prefixed(lt, idx("static_resources.listeners", i))...)
		if ml := md.listeners[l.GetName()]; ml != nil && ml.rds != "" {
			errs = append(errs, &FieldError{Type: "Bootstrap", Resource: "bootstrap", Field: idx("static_resources.listeners", i), Msg: "a static listener needs inline routes (route_config), RDS is not available to it"})
		}
	}
	if dr := bs.GetDynamicResources(); dr != nil {
		t.check("dynamic_resources", dr, dynFields)
		out.ADS, out.Delta = t.adsAddress(dr, sr)
	}
	errs = append(errs, t.errs...)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	a := md.assemble(cfg)
	if len(a.errs) > 0 {
		return nil, fmt.Errorf("xds: bootstrap: %s", strings.Join(a.errs, "; "))
	}
	if len(a.warming) > 0 {
		return nil, fmt.Errorf("xds: bootstrap: static resources wait for what only a control plane sends: %s", strings.Join(a.warming, ", "))
	}
	if err := config.Build(a.cfg, known, config.BuildOptions{Dynamic: out.ADS != ""}); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %s", a.explain(err))
	}
	out.Config, out.Warnings = a.cfg, t.warns
	return out, nil
}

// prefixed rewrites a resource's errors as bootstrap paths.
func prefixed(t *tr, path string) []*FieldError {
	var out []*FieldError
	for _, e := range t.errs {
		out = append(out, &FieldError{Type: "Bootstrap", Resource: "bootstrap", Field: join(path, e.Field), Msg: e.Msg})
	}
	return out
}

// adsAddress finds the control plane: ads_config's gRPC service, an
// envoy_grpc cluster (its first static host) or a google_grpc target.
func (t *tr) adsAddress(dr *bootstrapv3.Bootstrap_DynamicResources, sr *bootstrapv3.Bootstrap_StaticResources) (string, bool) {
	for _, cs := range []struct {
		path string
		src  *corev3.ConfigSource
	}{{"lds_config", dr.GetLdsConfig()}, {"cds_config", dr.GetCdsConfig()}} {
		if cs.src != nil && cs.src.GetAds() == nil {
			t.fail("dynamic_resources."+cs.path, "only ads {} is supported (resources come over the ADS stream)")
		}
	}
	ac := dr.GetAdsConfig()
	if ac == nil {
		t.fail("dynamic_resources.ads_config", "required: proxylab speaks ADS only")
		return "", false
	}
	t.check("dynamic_resources.ads_config", ac, apiFields)
	delta := false
	switch ac.GetApiType() {
	case corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_AGGREGATED_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC, corev3.ApiConfigSource_AGGREGATED_DELTA_GRPC:
		delta = true
	default:
		t.fail("dynamic_resources.ads_config.api_type", "%s is not supported (GRPC, DELTA_GRPC)", ac.GetApiType())
	}
	if len(ac.GetGrpcServices()) != 1 {
		t.fail("dynamic_resources.ads_config.grpc_services", "exactly one gRPC service is supported")
		return "", delta
	}
	gs := ac.GetGrpcServices()[0]
	t.check("dynamic_resources.ads_config.grpc_services[0]", gs, grpcSvcFields)
	if g := gs.GetGoogleGrpc(); g != nil {
		return strings.TrimPrefix(g.GetTargetUri(), "dns:///"), delta
	}
	name := gs.GetEnvoyGrpc().GetClusterName()
	for _, c := range sr.GetClusters() {
		if c.GetName() != name {
			continue
		}
		for _, loc := range c.GetLoadAssignment().GetEndpoints() {
			for _, e := range loc.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				if sa != nil {
					return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), delta
				}
			}
		}
	}
	t.fail("dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name", "no static cluster %q with an address", name)
	return "", delta
}

// jsonOf turns decoded YAML into JSON (maps with string keys).
func jsonOf(v any) ([]byte, error) {
	return jsonMarshal(normalize(v))
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := map[string]any{}
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

var jsonMarshal = json.Marshal
