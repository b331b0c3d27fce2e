package rbac

import (
	"net"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/transport"
)

// fakeAddrConn is a transport.Conn that only has addresses: OnAccept
// reads nothing else. (A unit-test driver; the integration test runs the
// filter in the binary, TestRBACListenerFilterTCP.)
type fakeAddrConn struct {
	transport.Conn
	remote, local net.Addr
}

func (c fakeAddrConn) RemoteAddr() net.Addr              { return c.remote }
func (c fakeAddrConn) LocalAddr() net.Addr               { return c.local }
func (c fakeAddrConn) Write(...*buffer.Buf) (int, error) { return 0, nil }

func TestNetworkRBAC(t *testing.T) {
	f, errs := decodeNetwork(yamlNode(t, `
rules:
  action: DENY
  policies:
    blocked:
      permissions: [{destination_port: 9000}]
      principals: [{not_id: {source_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}}]
`), "l")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	nf := f.(*NetworkFilter)
	cases := []struct {
		remote string
		port   int
		allow  bool
	}{{"10.1.1.1", 9000, true}, {"11.1.1.1", 9000, false}, {"11.1.1.1", 9001, true}}
	for _, tc := range cases {
		c := fakeAddrConn{remote: &net.TCPAddr{IP: net.ParseIP(tc.remote), Port: 5}, local: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tc.port}}
		if got := nf.OnAccept(c) != nil; got != tc.allow {
			t.Errorf("%s → :%d allowed %v, want %v", tc.remote, tc.port, got, tc.allow)
		}
	}
	if nf.Stats.Denied.Value() != 1 || nf.Stats.Allowed.Value() != 2 {
		t.Fatalf("counters %d %d", nf.Stats.Allowed.Value(), nf.Stats.Denied.Value())
	}
	for _, bad := range []struct{ yaml, want string }{
		{`rules: {policies: {p: {permissions: [{url_path: {path: {exact: /}}}], principals: [{any: true}]}}}`, "l.rules.policies.p: url_path cannot be matched on a connection"},
		{`shadow_rules: {policies: {p: {permissions: [{any: true}], principals: [{or_ids: {ids: [{authenticated: {}}]}}]}}}`, "l.shadow_rules.policies.p: authenticated cannot"},
	} {
		_, errs := decodeNetwork(yamlNode(t, bad.yaml), "l")
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.yaml, errs, bad.want)
		}
	}
}
