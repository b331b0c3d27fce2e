package xds

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/proxylab/proxylab/core/config"
)

// Type URLs of the resources the client subscribes to.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// model is every translated dynamic resource, by name. It is owned by the
// client's update goroutine.
type model struct {
	listeners map[string]*listener
	routes    map[string]*routeConfig
	clusters  map[string]*cluster
	endpoints map[string][]config.Host
	secrets   map[string]*secret
	// active are the clusters and listeners of the last config applied:
	// a resource updated into warming (waiting for its endpoints, routes
	// or secrets) keeps serving its previous version until it is warm, as
	// in Envoy.
	activeClusters  map[string]config.Cluster
	activeListeners map[string]assembledListener
}

type assembledListener struct {
	cfg    config.Listener
	vhosts []config.VirtualHost
}

func newModel() *model {
	return &model{listeners: map[string]*listener{}, routes: map[string]*routeConfig{}, clusters: map[string]*cluster{},
		endpoints: map[string][]config.Host{}, secrets: map[string]*secret{},
		activeClusters: map[string]config.Cluster{}, activeListeners: map[string]assembledListener{}}
}

// clone copies the maps (the values are never changed in place).
func (m *model) clone() *model {
	return &model{listeners: maps.Clone(m.listeners), routes: maps.Clone(m.routes), clusters: maps.Clone(m.clusters),
		endpoints: maps.Clone(m.endpoints), secrets: maps.Clone(m.secrets),
		activeClusters: maps.Clone(m.activeClusters), activeListeners: maps.Clone(m.activeListeners)}
}

// origin says which resource a part of the assembled config came from.
type origin struct{ typ, name string }

// assembly is a config built from a base and the model.
type assembly struct {
	cfg     *config.Config
	origins map[string]origin // "clusters[3]" → the Cluster resource
	warming []string          // "Cluster x (endpoints)", for logs
	// errs are inconsistencies between resources (a NACK of the update).
	errs   []string
	active map[string]config.Cluster
	actL   map[string]assembledListener
}

// assemble builds the whole config: the base's static parts, then the warm
// dynamic clusters and listeners (sorted by name, so the same resources
// give the same config).
func (m *model) assemble(base *config.Config) *assembly {
	cfg := *base
	cfg.Listeners = slices.Clone(base.Listeners)
	cfg.Routes = slices.Clone(base.Routes)
	cfg.Clusters = slices.Clone(base.Clusters)
	a := &assembly{cfg: &cfg, origins: map[string]origin{}, active: map[string]config.Cluster{}, actL: map[string]assembledListener{}}
	warm := map[string]bool{}
	for _, c := range base.Clusters {
		warm[c.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(m.clusters)) {
		cc, ok, err := m.warmCluster(m.clusters[name])
		if err != "" {
			a.errs = append(a.errs, fmt.Sprintf("Cluster %q: %s", name, err))
			continue
		}
		if !ok {
			prev, had := m.activeClusters[name]
			if !had {
				a.warming = append(a.warming, "Cluster "+name)
				continue
			}
			cc = prev
		}
		a.origins["clusters["+strconv.Itoa(len(cfg.Clusters))+"]"] = origin{ClusterType, name}
		cfg.Clusters = append(cfg.Clusters, cc)
		a.active[name] = cc
		warm[name] = true
	}
	routesAdded := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(m.listeners)) {
		al, ok := m.warmListener(m.listeners[name], warm)
		if !ok {
			prev, had := m.activeListeners[name]
			if !had {
				a.warming = append(a.warming, "Listener "+name)
				continue
			}
			al = prev
		}
		a.actL[name] = al
		lo := origin{ListenerType, name}
		if l := m.listeners[name]; l.rds != "" {
			lo = origin{RouteType, l.rds}
		}
		for _, vh := range al.vhosts {
			if routesAdded[vh.Name] {
				continue
			}
			routesAdded[vh.Name] = true
			a.origins["routes["+strconv.Itoa(len(cfg.Routes))+"]"] = lo
			cfg.Routes = append(cfg.Routes, vh)
		}
		a.origins["listeners["+strconv.Itoa(len(cfg.Listeners))+"]"] = origin{ListenerType, name}
		cfg.Listeners = append(cfg.Listeners, al.cfg)
	}
	return a
}

// warmCluster is the model cluster with its endpoints and secrets, or
// false while one of them has not arrived; err says why the cluster
// cannot be honoured.
func (m *model) warmCluster(c *cluster) (_ config.Cluster, _ bool, err string) {
	cc := c.cfg
	if c.eds != "" {
		hosts, ok := m.endpoints[c.eds]
		if !ok {
			return cc, false, ""
		}
		cc.Hosts = slices.Clone(hosts)
	}
	if c.tls != nil {
		t := *cc.TLS
		if c.tls.certSDS != "" {
			s, ok := m.secrets[c.tls.certSDS]
			if !ok {
				return cc, false, ""
			}
			t.ClientCert = &config.CertFiles{CertFile: s.certFile, KeyFile: s.keyFile}
		}
		if c.tls.caSDS != "" {
			s, ok := m.secrets[c.tls.caSDS]
			if !ok {
				return cc, false, ""
			}
			if len(s.sans) > 0 {
				return cc, false, fmt.Sprintf("transport_socket: secret %q: match_subject_alt_names: upstream SAN verification is not supported", c.tls.caSDS)
			}
			t.CAFile, t.InsecureSkipVerify = s.caFile, false
		}
		cc.TLS = &t
	}
	return cc, true, ""
}

// warmListener is the listener with its routes and secrets, or false while
// its RouteConfiguration, a secret or a cluster its routes name (known but
// still warming) is missing.
func (m *model) warmListener(l *listener, warm map[string]bool) (assembledListener, bool) {
	lc := l.cfg
	rc := l.inline
	if l.rds != "" {
		var ok bool
		if rc, ok = m.routes[l.rds]; !ok {
			return assembledListener{}, false
		}
	}
	needs := func(name string) bool { _, known := m.clusters[name]; return known && !warm[name] }
	if lc.TCP != nil && needs(lc.TCP.Cluster) {
		return assembledListener{}, false
	}
	var vhosts []config.VirtualHost
	if rc != nil {
		prefix := rc.name
		if l.rds == "" {
			prefix = "listener:" + l.cfg.Name
		}
		h := *lc.HTTP
		h.VirtualHosts = nil
		for _, vh := range rc.vhosts {
			for _, r := range vh.Routes {
				for _, c := range routeClusters(r) {
					if needs(c) {
						return assembledListener{}, false
					}
				}
			}
			vh.Name = prefix + "/" + vh.Name
			vhosts = append(vhosts, vh)
			h.VirtualHosts = append(h.VirtualHosts, vh.Name)
		}
		if len(vhosts) == 0 {
			// No virtual host: every request is a 404, as in Envoy.
			none := config.VirtualHost{Name: prefix + "/(none)", Domains: []string{"*"}}
			var r config.Route
			config.SetDefaults(&r)
			r.Prefix, r.DirectResponse = "/", &config.DirectResponse{Status: 404}
			none.Routes = []config.Route{r}
			vhosts, h.VirtualHosts = []config.VirtualHost{none}, []string{none.Name}
		}
		lc.HTTP = &h
	}
	if l.tls != nil {
		t := *lc.TLS
		t.Certificates = slices.Clone(t.Certificates)
		for _, n := range l.tls.certSDS {
			s, ok := m.secrets[n]
			if !ok {
				return assembledListener{}, false
			}
			t.Certificates = append(t.Certificates, config.CertFiles{CertFile: s.certFile, KeyFile: s.keyFile})
		}
		if n := l.tls.caSDS; n != "" {
			s, ok := m.secrets[n]
			if !ok {
				return assembledListener{}, false
			}
			t.ClientCA, t.ClientSANs = s.caFile, append(slices.Clone(t.ClientSANs), s.sans...)
		}
		lc.TLS = &t
	}
	return assembledListener{cfg: lc, vhosts: vhosts}, true
}

func routeClusters(r config.Route) []string {
	var out []string
	if r.Cluster != "" {
		out = append(out, r.Cluster)
	}
	for _, w := range r.WeightedClusters {
		out = append(out, w.Name)
	}
	for _, m := range r.RequestMirrorPolicies {
		out = append(out, m.Cluster)
	}
	return out
}

var indexed = regexp.MustCompile(`^(clusters|routes|listeners)\[\d+\]`)

// explain turns Build's errors into NACK text: each names the resource it
// came from and the field path in the assembled config.
func (a *assembly) explain(err error) string {
	var es config.Errors
	if !errors.As(err, &es) {
		return err.Error()
	}
	lines := make([]string, 0, len(es))
	for _, e := range es {
		where := "static config"
		if k := indexed.FindString(e.Path); k != "" {
			if o, ok := a.origins[k]; ok {
				where = fmt.Sprintf("%s %q", shortType(o.typ), o.name)
			}
		}
		lines = append(lines, fmt.Sprintf("%s: %s: %s", where, e.Path, e.Msg))
	}
	return strings.Join(lines, "; ")
}
