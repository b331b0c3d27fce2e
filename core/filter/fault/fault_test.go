package fault

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/protocol"
)

func decodeYAML(t *testing.T, y string) (*Factory, []error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(y), &n); err != nil {
		t.Fatal(err)
	}
	f, errs := decode(&n, "fault")
	if f == nil {
		return nil, errs
	}
	return f.(*Factory), errs
}

// TestConfigValidate: bad configs are refused with their paths.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct{ y, want string }{
		{`abort: {http_status: 503, grpc_status: 14}`, "fault.abort: needs exactly one"},
		{`abort: {http_status: 700}`, "fault.abort.http_status: must be 200-599"},
		{`abort: {grpc_status: 0}`, "fault.abort.grpc_status: must be a gRPC error code 1-16"},
		{`abort: {http_status: 503, percentage: {numerator: 101}}`, "fault.abort.percentage.numerator: 101 is over"},
		{`abort: {http_status: 503, percentage: {numerator: 1, denominator: BILLION}}`, "fault.abort.percentage.denominator: unknown"},
		{`delay: {}`, "fault.delay: needs fixed_delay"},
		{`delay: {fixed_delay: soon}`, "fault.delay.fixed_delay"},
		{`max_active_faults: -1`, "fault.max_active_faults: must be >= 0"},
		{`abrot: {}`, "fault.abrot: unknown field"},
	} {
		_, errs := decodeYAML(t, tc.y)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.y, errs, tc.want)
		}
	}
}

// TestFaultDecisions: which requests get a delay or an abort.
func TestFaultDecisions(t *testing.T) {
	head := func(kv ...string) *protocol.Head {
		h := &protocol.Head{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Headers.Add(kv[i], []byte(kv[i+1]))
		}
		return h
	}
	for _, tc := range []struct {
		name, cfg  string
		h          *protocol.Head
		delayMS    int
		abort      int
		grpcStatus int
	}{
		{"fixed abort", `abort: {http_status: 503}`, head(), 0, 503, 0},
		{"abort 0%", `abort: {http_status: 503, percentage: {numerator: 0}}`, head(), 0, 0, 0},
		{"grpc abort", `abort: {grpc_status: 14}`, head(), 0, 500, 14},
		{"header abort", `abort: {header_abort: {}}`, head("x-envoy-fault-abort-request", "429"), 0, 429, 0},
		{"header abort absent", `abort: {header_abort: {}}`, head(), 0, 0, 0},
		{"header abort bad value", `abort: {header_abort: {}}`, head("x-envoy-fault-abort-request", "99"), 0, 0, 0},
		{"header abort lowered to 0%", `abort: {header_abort: {}}`, head("x-envoy-fault-abort-request", "429", "x-envoy-fault-abort-request-percentage", "0"), 0, 0, 0},
		{"header grpc abort", `abort: {header_abort: {}}`, head("x-envoy-fault-abort-grpc-request", "7"), 0, 500, 7},
		{"fixed delay", `delay: {fixed_delay: 1500ms}`, head(), 1500, 0, 0},
		{"header delay", `delay: {header_delay: {}}`, head("x-envoy-fault-delay-request", "20"), 20, 0, 0},
		{"header delay not a number", `delay: {header_delay: {}}`, head("x-envoy-fault-delay-request", "2s"), 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, errs := decodeYAML(t, tc.cfg)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			x := &fault{f: f}
			if d := x.delay(f.cfg, tc.h); int(d.Milliseconds()) != tc.delayMS {
				t.Errorf("delay %v, want %dms", d, tc.delayMS)
			}
			r := x.abortReply(f.cfg, tc.h)
			switch {
			case tc.abort == 0 && r != nil:
				t.Errorf("aborted with %d", r.Status)
			case tc.abort != 0 && (r == nil || r.Status != tc.abort || r.GRPCStatus != tc.grpcStatus || r.Flags != "FI"):
				t.Errorf("abort %+v, want %d grpc %d", r, tc.abort, tc.grpcStatus)
			}
		})
	}
}

// TestMaxActiveFaults: past the cap no fault starts; a slot frees when its
// stream ends; the gauge follows.
func TestMaxActiveFaults(t *testing.T) {
	f, errs := decodeYAML(t, `{abort: {http_status: 503}, max_active_faults: 2}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	a, b, c := &fault{f: f}, &fault{f: f}, &fault{f: f}
	if !a.start(f.cfg) || !b.start(f.cfg) || c.start(f.cfg) {
		t.Fatal("the third concurrent fault started")
	}
	if _, _, active := f.Stats(); active != 2 {
		t.Fatalf("active %d, want 2", active)
	}
	a.OnDestroy()
	if !c.start(f.cfg) {
		t.Fatal("a freed slot was not reused")
	}
	b.OnDestroy()
	c.OnDestroy()
	c.OnDestroy() // once only
	if _, _, active := f.Stats(); active != 0 {
		t.Fatalf("active %d after every stream ended, want 0", active)
	}
}
