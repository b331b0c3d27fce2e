package xds

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// newMessage is an empty message of a subscribed type.
func newMessage(typeURL string) (proto.Message, error) {
	switch typeURL {
	case ListenerType:
		return &listenerv3.Listener{}, nil
	case RouteType:
		return &routev3.RouteConfiguration{}, nil
	case ClusterType:
		return &clusterv3.Cluster{}, nil
	case EndpointType:
		return &endpointv3.ClusterLoadAssignment{}, nil
	case SecretType:
		return &tlsv3.Secret{}, nil
	}
	return nil, fmt.Errorf("xds: unsupported resource type %s", typeURL)
}

// unpack decodes a resource of its type.
func unpack(a *anypb.Any) (proto.Message, error) {
	m, err := newMessage(a.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	if err := a.UnmarshalTo(m); err != nil {
		return nil, fmt.Errorf("xds: %s: %w", shortType(a.GetTypeUrl()), err)
	}
	return m, nil
}

// resourceName is the name a resource is known by.
func resourceName(a *anypb.Any) (string, error) {
	m, err := unpack(a)
	if err != nil {
		return "", err
	}
	if cla, ok := m.(*endpointv3.ClusterLoadAssignment); ok {
		return cla.GetClusterName(), nil
	}
	return m.(interface{ GetName() string }).GetName(), nil
}

// put translates a resource into the model; the tr holds its errors and
// warnings (with errors the model is left unchanged).
func (m *model) put(typeURL, name string, msg proto.Message, files FileStore) *tr {
	t := &tr{typ: typeURL, name: name, files: files}
	switch r := msg.(type) {
	case *listenerv3.Listener:
		if l := t.translateListener(r); len(t.errs) == 0 {
			m.listeners[name] = l
		}
	case *routev3.RouteConfiguration:
		if rc := t.translateRoutes("", r); len(t.errs) == 0 {
			m.routes[name] = rc
		}
	case *clusterv3.Cluster:
		if c := t.translateCluster(r); len(t.errs) == 0 {
			m.clusters[name] = c
		}
	case *endpointv3.ClusterLoadAssignment:
		if hosts := t.translateCLA("", r); len(t.errs) == 0 {
			m.endpoints[name] = hosts
		}
	case *tlsv3.Secret:
		if s := t.translateSecret(r); len(t.errs) == 0 {
			m.secrets[name] = s
		}
	}
	return t
}

// remove drops a resource from the model.
func (m *model) remove(typeURL, name string) {
	switch typeURL {
	case ListenerType:
		delete(m.listeners, name)
		delete(m.activeListeners, name)
	case RouteType:
		delete(m.routes, name)
	case ClusterType:
		delete(m.clusters, name)
		delete(m.activeClusters, name)
	case EndpointType:
		delete(m.endpoints, name)
	case SecretType:
		delete(m.secrets, name)
	}
}
