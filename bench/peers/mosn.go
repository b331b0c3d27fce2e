package peers

import (
	"encoding/json"
	"strings"
)

// MOSN's static configuration (v1 JSON), the parts the benchmark needs.
// MOSN is not installable on the development machine; the output is pinned
// by golden files and run only where a mosn binary is on PATH.
type mosnConfig struct {
	Servers        []mosnServer   `json:"servers"`
	ClusterManager mosnClusterMgr `json:"cluster_manager"`
}

type mosnServer struct {
	DefaultLogPath  string         `json:"default_log_path"`
	DefaultLogLevel string         `json:"default_log_level"`
	Processor       int            `json:"processor"`
	Routers         []mosnRouter   `json:"routers,omitempty"`
	Listeners       []mosnListener `json:"listeners"`
}

type mosnRouter struct {
	Name         string      `json:"router_config_name"`
	VirtualHosts []mosnVHost `json:"virtual_hosts"`
}

type mosnVHost struct {
	Name    string      `json:"name"`
	Domains []string    `json:"domains"`
	Routers []mosnRoute `json:"routers"`
}

type mosnRoute struct {
	Match struct {
		Prefix string `json:"prefix"`
	} `json:"match"`
	Route struct {
		Cluster string `json:"cluster_name"`
	} `json:"route"`
}

type mosnListener struct {
	Name         string            `json:"name"`
	Address      string            `json:"address"`
	BindPort     bool              `json:"bind_port"`
	FilterChains []mosnFilterChain `json:"filter_chains"`
}

type mosnFilterChain struct {
	TLS     *mosnTLS     `json:"tls_context,omitempty"`
	Filters []mosnFilter `json:"filters"`
}

type mosnTLS struct {
	Status     bool     `json:"status"`
	CertChain  string   `json:"cert_chain"`
	PrivateKey string   `json:"private_key"`
	ALPN       []string `json:"alpn,omitempty"`
}

type mosnFilter struct {
	Type   string `json:"type"`
	Config any    `json:"config"` // one of the typed configs below
}

type mosnProxy struct {
	Downstream string `json:"downstream_protocol"`
	Upstream   string `json:"upstream_protocol"`
	Router     string `json:"router_config_name"`
}

type mosnTCPProxy struct {
	Cluster string `json:"cluster"`
	Routes  []struct {
		Cluster string `json:"cluster"`
	} `json:"routes"`
}

type mosnClusterMgr struct {
	Clusters []mosnCluster `json:"clusters"`
}

type mosnCluster struct {
	Name              string     `json:"name"`
	Type              string     `json:"type"`
	LBType            string     `json:"lb_type"`
	MaxRequestPerConn int        `json:"max_request_per_conn"`
	ConnBufferLimit   int        `json:"conn_buffer_limit_bytes"`
	CircuitBreakers   []mosnCB   `json:"circuit_breakers"`
	Hosts             []mosnHost `json:"hosts"`
}

type mosnCB struct {
	MaxConnections     int `json:"max_connections"`
	MaxPendingRequests int `json:"max_pending_requests"`
	MaxRequests        int `json:"max_requests"`
}

type mosnHost struct {
	Address string `json:"address"`
}

// MOSN renders a mosn config.json: the proxy filter (Http1 or Http2 each
// side, as the protocol says) or tcp_proxy, in front of one cluster.
func MOSN(s Scenario) (string, error) {
	if err := check(s); err != nil {
		return "", err
	}
	srv := mosnServer{DefaultLogPath: "stdout", DefaultLogLevel: "ERROR", Processor: s.workers()}
	l := mosnListener{Name: "bench", Address: s.Listen, BindPort: true}
	if s.l4() {
		tp := mosnTCPProxy{Cluster: "upstream"}
		tp.Routes = append(tp.Routes, struct {
			Cluster string `json:"cluster"`
		}{"upstream"})
		l.FilterChains = []mosnFilterChain{{Filters: []mosnFilter{{Type: "tcp_proxy", Config: tp}}}}
	} else {
		down, up := "Http1", "Http1"
		switch s.Protocol {
		case "http2":
			down = "Http2"
		case "grpc":
			down, up = "Http2", "Http2"
		}
		var rt mosnRoute
		rt.Match.Prefix, rt.Route.Cluster = "/", "upstream"
		srv.Routers = []mosnRouter{{Name: "bench", VirtualHosts: []mosnVHost{{Name: "all", Domains: []string{"*"}, Routers: []mosnRoute{rt}}}}}
		l.FilterChains = []mosnFilterChain{{Filters: []mosnFilter{{Type: "proxy", Config: mosnProxy{Downstream: down, Upstream: up, Router: "bench"}}}}}
	}
	if t := s.TLS; t != nil {
		l.FilterChains[0].TLS = &mosnTLS{Status: true, CertChain: t.Cert, PrivateKey: t.Key, ALPN: []string{s.alpn()}}
	}
	srv.Listeners = []mosnListener{l}
	cl := mosnCluster{Name: "upstream", Type: "SIMPLE", LBType: "LB_ROUNDROBIN", MaxRequestPerConn: 1 << 20, ConnBufferLimit: 32 << 10,
		CircuitBreakers: []mosnCB{{MaxConnections: s.maxConns(), MaxPendingRequests: s.maxConns(), MaxRequests: s.maxConns()}}}
	for _, u := range s.Upstreams {
		cl.Hosts = append(cl.Hosts, mosnHost{Address: u})
	}
	out, err := json.MarshalIndent(mosnConfig{Servers: []mosnServer{srv}, ClusterManager: mosnClusterMgr{Clusters: []mosnCluster{cl}}}, "", "  ")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)) + "\n", nil
}
