package xds

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/proxylab/proxylab/foundation/stats"
)

// Stats are the client's counters, exported through stats.Collector (the
// admin API's /stats and /stats/prometheus).
type Stats struct {
	byType     map[string]*TypeStats
	reconnects atomic.Uint64
	mu         sync.Mutex
	warnings   map[string]uint64 // "Type.field" → count
}

// TypeStats are one resource type's update counters.
type TypeStats struct {
	attempts, successes, rejections atomic.Uint64
	mu                              sync.Mutex
	version                         string
	lastUpdate                      time.Time
}

var _ stats.Collector = (*Stats)(nil)

func newStats() *Stats {
	s := &Stats{byType: map[string]*TypeStats{}, warnings: map[string]uint64{}}
	for _, t := range order {
		s.byType[t] = &TypeStats{}
	}
	return s
}

func (s *Stats) of(t string) *TypeStats { return s.byType[t] }

func (ts *TypeStats) accept(version string, at time.Time) {
	ts.successes.Add(1)
	ts.mu.Lock()
	ts.version, ts.lastUpdate = version, at
	ts.mu.Unlock()
}

// Version is the last accepted version of the type.
func (ts *TypeStats) Version() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.version
}

func (s *Stats) warn(w Warning) {
	s.mu.Lock()
	s.warnings[shortType(w.Type)+"."+w.Field]++
	s.mu.Unlock()
}

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return c.stats }

// Collect emits proxylab_xds_* metrics.
func (s *Stats) Collect(emit stats.Emit) {
	for _, t := range order {
		ts := s.byType[t]
		l := stats.Label{Name: "type", Value: shortType(t)}
		emit("xds_update_attempt_total", "xDS responses processed, by resource type.", stats.CounterKind, float64(ts.attempts.Load()), l)
		emit("xds_update_success_total", "xDS responses accepted (ACKed), by resource type.", stats.CounterKind, float64(ts.successes.Load()), l)
		emit("xds_update_rejected_total", "xDS responses rejected (NACKed), by resource type.", stats.CounterKind, float64(ts.rejections.Load()), l)
		ts.mu.Lock()
		v, at := ts.version, ts.lastUpdate
		ts.mu.Unlock()
		last := 0.0
		if !at.IsZero() {
			last = float64(at.UnixMilli()) / 1000
		}
		emit("xds_last_update_timestamp_seconds", "When the type's last update was accepted (Unix time; 0: never).", stats.GaugeKind, last, l)
		emit("xds_version_info", "The type's accepted version, as the version label (value 1).", stats.GaugeKind, 1, l, stats.Label{Name: "version", Value: v})
	}
	emit("xds_reconnects_total", "ADS streams ended and retried.", stats.CounterKind, float64(s.reconnects.Load()))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range slices.Sorted(maps.Keys(s.warnings)) {
		emit("xds_fields_not_honoured_total", "Cosmetic Envoy fields accepted but not honoured, by field.", stats.CounterKind, float64(s.warnings[f]), stats.Label{Name: "field", Value: f})
	}
}

// DumpResource is one dynamic resource in /config_dump.
type DumpResource struct {
	Name        string `yaml:"name" json:"name"`
	Version     string `yaml:"version" json:"version"`
	LastUpdated string `yaml:"last_updated" json:"last_updated"`
	// Resource is the resource as received (protojson).
	Resource any `yaml:"resource" json:"resource"`
}

// Dump lists the accepted dynamic resources by type, with their versions.
func (c *Client) Dump() map[string]any {
	c.dumpMu.Lock()
	defer c.dumpMu.Unlock()
	out := map[string]any{"control_plane": c.opt.Address, "delta": c.opt.Delta, "static_resources": c.static}
	for _, t := range order {
		var list []DumpResource
		for _, n := range slices.Sorted(maps.Keys(c.dump[t])) {
			r := c.dump[t][n]
			var v any = r.any.GetTypeUrl()
			if t == SecretType {
				v = "[redacted]"
			} else if m, err := unpack(r.any); err == nil {
				redact(m.ProtoReflect())
				if js, err := protojson.Marshal(m); err == nil {
					v = string(js)
				}
			}
			list = append(list, DumpResource{Name: n, Version: r.version, LastUpdated: r.accepted.UTC().Format(time.RFC3339Nano), Resource: v})
		}
		out["dynamic_"+shortType(t)] = map[string]any{"version": c.stats.of(t).Version(), "resources": list}
	}
	return out
}

// redact clears every private_key in m, looking into Any fields too, so a
// dump never shows key material.
func redact(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "private_key" || fd.Name() == "password":
			m.Clear(fd)
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				redact(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { redact(mv.Message()); return true })
			}
		case fd.Message().FullName() == "google.protobuf.Any":
			a := v.Message().Interface().(*anypb.Any)
			if inner, err := a.UnmarshalNew(); err == nil {
				redact(inner.ProtoReflect())
				if b, err := anypb.New(inner); err == nil {
					a.Value = b.Value
				}
			}
		default:
			redact(v.Message())
		}
		return true
	})
}
