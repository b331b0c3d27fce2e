package rbac

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/filter/filtertest"
	"github.com/proxylab/proxylab/core/protocol"
)

func yamlNode(t testing.TB, s string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func mustFactory(t testing.TB, s string) *Factory {
	t.Helper()
	f, errs := decode(yamlNode(t, s), "http_filters[0]")
	if len(errs) > 0 {
		t.Fatalf("decode: %v", errs)
	}
	return f.(*Factory)
}

const policyYAML = `
rules:
  action: ALLOW
  policies:
    admin:
      permissions:
        - and_rules:
            rules:
              - header: {name: ":method", string_match: {exact: GET}}
              - url_path: {path: {prefix: /admin/}}
      principals:
        - authenticated: {principal_name: {exact: "spiffe://example.org/admin"}}
    public:
      permissions:
        - url_path: {path: {safe_regex: {regex: "/pub(/.*)?"}}}
        - destination_port: 8443
      principals:
        - any: true
    internal:
      permissions:
        - not_rule: {url_path: {path: {prefix: /admin/}}}
      principals:
        - and_ids:
            ids:
              - source_ip: {address_prefix: 10.0.0.0, prefix_len: 8}
              - not_id: {header: {name: x-blocked, present_match: true}}
    tenant:
      permissions:
        - or_rules:
            rules:
              - header: {name: x-tenant, exact_match: acme}
              - header: {name: x-tenant, string_match: {suffix: .corp, ignore_case: true}}
      principals:
        - or_ids:
            ids:
              - direct_remote_ip: {address_prefix: "192.168.1.0", prefix_len: 24}
              - authenticated: {principal_name: {suffix: ".example.org"}}
shadow_rules:
  action: DENY
  policies:
    noisy:
      permissions: [{header: {name: x-debug, present_match: true}}]
      principals: [{any: true}]
`

func cert(uri, dns, cn string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	if uri != "" {
		u, _ := url.Parse(uri)
		c.URIs = []*url.URL{u}
	}
	if dns != "" {
		c.DNSNames = []string{dns}
	}
	return c
}

func head(method, target string, hdrs ...string) *protocol.Head {
	h := &protocol.Head{Method: []byte(method), Target: []byte(target)}
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Headers.Add(hdrs[i], []byte(hdrs[i+1]))
	}
	return h
}

func TestRBACTable(t *testing.T) {
	f := mustFactory(t, policyYAML)
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	cases := []struct {
		name   string
		head   *protocol.Head
		remote string
		local  string
		cert   *x509.Certificate
		allow  bool
	}{
		{"admin with spiffe id", head("GET", "/admin/x"), "1.2.3.4:5", "127.0.0.1:80", cert("spiffe://example.org/admin", "", ""), true},
		{"admin wrong method", head("POST", "/admin/x"), "1.2.3.4:5", "127.0.0.1:80", cert("spiffe://example.org/admin", "", ""), false},
		{"admin no cert", head("GET", "/admin/x"), "1.2.3.4:5", "127.0.0.1:80", nil, false},
		{"admin other spiffe", head("GET", "/admin/x"), "1.2.3.4:5", "127.0.0.1:80", cert("spiffe://example.org/user", "", ""), false},
		{"uri san wins over dns", head("GET", "/admin/x"), "1.2.3.4:5", "127.0.0.1:80", cert("spiffe://x/y", "spiffe://example.org/admin", ""), false},
		{"public regex", head("GET", "/pub/a?x=/admin/"), "1.2.3.4:5", "127.0.0.1:80", nil, true},
		{"public regex exact", head("GET", "/pub"), "1.2.3.4:5", "127.0.0.1:80", nil, true},
		{"public regex no partial", head("GET", "/public"), "1.2.3.4:5", "127.0.0.1:80", nil, false},
		{"dot segments resolved", head("GET", "/pub/../admin/x"), "1.2.3.4:5", "127.0.0.1:80", nil, false},
		{"encoded dots resolved", head("GET", "/pub/%2e%2E/secret"), "1.2.3.4:5", "127.0.0.1:80", nil, false},
		{"encoded slash resolved", head("GET", "/pub/..%2Fsecret"), "1.2.3.4:5", "127.0.0.1:80", nil, false},
		{"merged slashes", head("GET", "//pub//a"), "1.2.3.4:5", "127.0.0.1:80", nil, true},
		{"encoded unreserved", head("GET", "/%70ub/a"), "1.2.3.4:5", "127.0.0.1:80", nil, true},
		{"internal not admin via dots", head("GET", "/x/../admin/a"), "10.9.8.7:5", "127.0.0.1:80", nil, false},
		{"public by port", head("GET", "/x"), "1.2.3.4:5", "127.0.0.1:8443", nil, true},
		{"internal cidr", head("GET", "/x"), "10.9.8.7:5", "127.0.0.1:80", nil, true},
		{"internal cidr v4-mapped", head("GET", "/x"), "[::ffff:10.9.8.7]:5", "127.0.0.1:80", nil, true},
		{"internal blocked header", head("GET", "/x", "X-Blocked", "1"), "10.9.8.7:5", "127.0.0.1:80", nil, false},
		{"internal not admin", head("GET", "/admin/a"), "10.9.8.7:5", "127.0.0.1:80", nil, false},
		{"outside cidr", head("GET", "/x"), "11.0.0.1:5", "127.0.0.1:80", nil, false},
		{"tenant exact + lan", head("GET", "/x", "x-tenant", "acme"), "192.168.1.9:5", "127.0.0.1:80", nil, true},
		{"tenant suffix ignore case + dns", head("GET", "/x", "x-tenant", "Foo.CORP"), "8.8.8.8:5", "127.0.0.1:80", cert("", "a.example.org", ""), true},
		{"tenant duplicated header joins", head("GET", "/x", "x-tenant", "acme", "x-tenant", "evil"), "192.168.1.9:5", "127.0.0.1:80", nil, false},
		{"tenant subject fallback", head("GET", "/x", "x-tenant", "acme"), "8.8.8.8:5", "127.0.0.1:80", cert("", "", "b.example.org"), true},
		{"tenant wrong lan", head("GET", "/x", "x-tenant", "acme"), "192.168.2.9:5", "127.0.0.1:80", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := filtertest.NewStream()
			s.I.Remote, s.I.Local, s.I.Cert = tcp(tc.remote), tcp(tc.local), tc.cert
			fl := f.NewFilter(s).(filter.DecoderFilter)
			st := fl.DecodeHeaders(tc.head, true)
			fl.OnDestroy()
			if got := st == filter.Continue && s.Reply == nil; got != tc.allow {
				t.Fatalf("allowed = %v, want %v (reply %+v)", got, tc.allow, s.Reply)
			}
			if !tc.allow && (s.Reply.Status != 403 || s.Reply.Body != "RBAC: access denied" || s.Reply.GRPCStatus != 7) {
				t.Fatalf("reply %+v", s.Reply)
			}
		})
	}
	if f.Stats.Allowed.Value()+f.Stats.Denied.Value() != uint64(len(cases)) || f.Stats.ShadowAllowed.Value() != uint64(len(cases)) {
		t.Fatalf("counters %d %d %d", f.Stats.Allowed.Value(), f.Stats.Denied.Value(), f.Stats.ShadowAllowed.Value())
	}
}

func TestRBACShadowAndPerRoute(t *testing.T) {
	f := mustFactory(t, policyYAML)
	s := filtertest.NewStream()
	s.I.Remote, s.I.Local = &net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	fl := f.NewFilter(s).(filter.DecoderFilter)
	if fl.DecodeHeaders(head("GET", "/x", "x-debug", "1"), true) != filter.Stop {
		t.Fatal("want denied")
	}
	if f.Stats.ShadowDenied.Value() != 1 {
		t.Fatal("shadow deny not counted")
	}
	// A route override replacing the rules: DENY /x only.
	pr, errs := decodePerRoute(yamlNode(t, `rbac: {rules: {action: DENY, policies: {p: {permissions: [{url_path: {path: {exact: /x}}}], principals: [{any: true}]}}}}`), "r")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s = filtertest.NewStream()
	s.I.Remote, s.I.Local, s.I.PerRoute = &net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}, &net.TCPAddr{Port: 80}, pr
	fl = f.NewFilter(s).(filter.DecoderFilter)
	if fl.DecodeHeaders(head("GET", "/y"), true) != filter.Continue {
		t.Fatal("route override should allow /y")
	}
	if fl.DecodeHeaders(head("GET", "/x"), true) != filter.Stop {
		t.Fatal("route override should deny /x")
	}
	// An override without rbac turns the filter off.
	pr, _ = decodePerRoute(yamlNode(t, `{}`), "r")
	s.I.PerRoute = pr
	if fl.DecodeHeaders(head("GET", "/admin/z"), true) != filter.Continue {
		t.Fatal("empty override should disable")
	}
}

func TestRBACConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`rules: {action: MAYBE}`, "f.rules.action: must be ALLOW or DENY"},
		{`rules: {policies: {p: {permissions: [{}], principals: [{any: true}]}}}`, "f.rules.policies.p.permissions[0]: exactly one of"},
		{`rules: {policies: {p: {permissions: [{any: true, destination_port: 1}], principals: [{any: true}]}}}`, "(2 set)"},
		{`rules: {policies: {p: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: nope}}]}}}`, "f.rules.policies.p.principals[0].source_ip.address_prefix: not an IP"},
		{`rules: {policies: {p: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 10.0.0.0, prefix_len: 33}}]}}}`, "prefix_len: must be at most 32"},
		{`rules: {policies: {p: {permissions: [{url_path: {path: {safe_regex: {regex: "("}}}}], principals: [{any: true}]}}}`, "url_path.path.safe_regex.regex"},
		{`rules: {policies: {p: {permissions: [{header: {name: x}}], principals: [{any: true}]}}}`, "permissions[0].header: exactly one of"},
		{`rules: {policies: {p: {permissions: [{any: true}], principals: [{not_id: {bogus: 1}}]}}}`, "principals[0].not_id.bogus: unknown field"},
		{`rules: {policies: {p: {permissions: [{any: true}]}}}`, "principals: at least one"},
		{`rules: {policies: {p: {permissions: [{destination_port: 70000}], principals: [{any: true}]}}}`, "destination_port: must be at most 65535"},
	}
	for _, tc := range cases {
		_, errs := decode(yamlNode(t, tc.yaml), "f")
		var all []string
		for _, e := range errs {
			all = append(all, e.Error())
		}
		if !strings.Contains(strings.Join(all, "\n"), tc.want) {
			t.Errorf("%s: errors %q, want %q", tc.yaml, all, tc.want)
		}
	}
}

func TestNormPath(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b": "/a/b", "/a/./b": "/a/b", "/a/../b": "/b", "/../../a": "/a", "/a/b/..": "/a/", "//a///b/": "/a/b/",
		"/a%2fb": "/a/b", "/%2E%2e/x": "/x", "/a%20b": "/a%20b", "/a%zz": "/a%zz", "/a%4": "/a%4", "": "", "/": "/", "/.": "/",
	} {
		if got := string(normPath([]byte(in))); got != want {
			t.Errorf("normPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRBACNoRulesPasses(t *testing.T) {
	f := mustFactory(t, `{}`)
	s := filtertest.NewStream()
	s.I.Remote, s.I.Local = &net.TCPAddr{Port: 1}, &net.TCPAddr{Port: 2}
	if f.NewFilter(s).(filter.DecoderFilter).DecodeHeaders(head("GET", "/"), true) != filter.Continue {
		t.Fatal("no rules must pass")
	}
	f = mustFactory(t, `rules: {action: ALLOW}`)
	if f.NewFilter(s).(filter.DecoderFilter).DecodeHeaders(head("GET", "/"), true) != filter.Stop {
		t.Fatal("ALLOW without policies must deny")
	}
}

func BenchmarkRBACDecodeHeaders(b *testing.B) {
	f := mustFactory(b, policyYAML)
	s := filtertest.NewStream()
	s.I.Remote, s.I.Local = &net.TCPAddr{IP: net.IPv4(10, 1, 1, 1), Port: 1}, &net.TCPAddr{Port: 80}
	h := head("GET", "/x/y?z", "x-tenant", "acme", "user-agent", "bench")
	b.ReportAllocs()
	for b.Loop() {
		fl := f.NewFilter(s).(filter.DecoderFilter)
		if fl.DecodeHeaders(h, true) != filter.Continue {
			b.Fatal("denied")
		}
		fl.OnDestroy()
	}
}
