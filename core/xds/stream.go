package xds

import (
	"context"
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// update is one response of either variant, as the client processes it.
type update struct {
	typeURL string
	version string // SotW version_info, delta system_version_info
	nonce   string
	// full: the resources are the type's whole set (SotW LDS and CDS);
	// otherwise they are upserts and removed lists deletions.
	full      bool
	resources map[string]*anypb.Any
	versions  map[string]string // per resource (delta)
	removed   []string
}

// reply is what the client says about a type: its ACK or NACK of the
// last response (nonce) and the names it wants.
type reply struct {
	typeURL string
	version string // last accepted
	nonce   string
	names   []string // nil: wildcard
	nack    string   // error_detail message; "" for an ACK
	// have are the resources held, by name → version (delta's
	// initial_resource_versions on a new stream).
	have map[string]string
}

// adsStream is one ADS stream of either variant. send and recv are each
// called from one goroutine.
type adsStream interface {
	send(r reply) error
	recv() (*update, error)
}

// sotwStream is state-of-the-world ADS.
type sotwStream struct {
	s    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node *corev3.Node
}

func newSotW(ctx context.Context, cc *grpc.ClientConn, node *corev3.Node) (adsStream, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &sotwStream{s: s, node: node}, nil
}

func (s *sotwStream) send(r reply) error {
	req := &discoveryv3.DiscoveryRequest{Node: s.node, TypeUrl: r.typeURL, VersionInfo: r.version,
		ResponseNonce: r.nonce, ResourceNames: r.names}
	if r.nack != "" {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: r.nack}
	}
	return s.s.Send(req)
}

func (s *sotwStream) recv() (*update, error) {
	resp, err := s.s.Recv()
	if err != nil {
		return nil, err
	}
	u := &update{typeURL: resp.GetTypeUrl(), version: resp.GetVersionInfo(), nonce: resp.GetNonce(),
		full: resp.GetTypeUrl() == ListenerType || resp.GetTypeUrl() == ClusterType, resources: map[string]*anypb.Any{}}
	for _, a := range resp.GetResources() {
		name, err := resourceName(a)
		if err != nil {
			return nil, err
		}
		u.resources[name] = a
	}
	return u, nil
}

// deltaStream is incremental ADS: it remembers what each type subscribes
// to, so a reply's names become subscribe/unsubscribe lists.
type deltaStream struct {
	s          discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node       *corev3.Node
	subscribed map[string]map[string]bool // by type; nil map: wildcard
	started    map[string]bool
}

func newDelta(ctx context.Context, cc *grpc.ClientConn, node *corev3.Node) (adsStream, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &deltaStream{s: s, node: node, subscribed: map[string]map[string]bool{}, started: map[string]bool{}}, nil
}

func (d *deltaStream) send(r reply) error {
	req := &discoveryv3.DeltaDiscoveryRequest{Node: d.node, TypeUrl: r.typeURL, ResponseNonce: r.nonce}
	if r.nack != "" {
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: r.nack}
	}
	if !d.started[r.typeURL] {
		d.started[r.typeURL] = true
		req.InitialResourceVersions = r.have
		if r.names != nil {
			d.subscribed[r.typeURL] = map[string]bool{}
		}
	}
	if cur := d.subscribed[r.typeURL]; r.names != nil && cur != nil {
		want := map[string]bool{}
		for _, n := range r.names {
			want[n] = true
			if !cur[n] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(cur)) {
			if !want[n] {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		d.subscribed[r.typeURL] = want
	}
	return d.s.Send(req)
}

func (d *deltaStream) recv() (*update, error) {
	resp, err := d.s.Recv()
	if err != nil {
		return nil, err
	}
	u := &update{typeURL: resp.GetTypeUrl(), version: resp.GetSystemVersionInfo(), nonce: resp.GetNonce(),
		resources: map[string]*anypb.Any{}, versions: map[string]string{}, removed: resp.GetRemovedResources()}
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			continue // a heartbeat or name-only entry
		}
		u.resources[r.GetName()] = r.GetResource()
		u.versions[r.GetName()] = r.GetVersion()
	}
	if u.version == "" {
		u.version = resp.GetNonce() // delta has no type version; the nonce stands for it
	}
	return u, nil
}
