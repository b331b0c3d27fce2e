package rbac

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/proxylab/proxylab/core/protocol"
)

// FuzzRBAC evaluates arbitrary requests against a fixed policy: it never
// panics, and the compiled NOT/AND/OR nodes obey their laws on every input.
func FuzzRBAC(f *testing.F) {
	f.Add("GET", "/admin/x", "x-tenant", "acme", []byte{10, 0, 0, 1}, uint16(8443))
	f.Add("", "", "", "", []byte{}, uint16(0))
	f.Add("POST", "http://h/pub?q#f", "X-TENANT", "a.CORP", []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(80))
	fa := mustFactory(f, policyYAML)
	var leaves []node
	for _, p := range fa.rules.enforce.policies {
		collect(&p.perms, &leaves)
		collect(&p.ids, &leaves)
	}
	f.Fuzz(func(t *testing.T, method, target, hname, hval string, ip []byte, port uint16) {
		h := &protocol.Head{Method: []byte(method), Target: []byte(target)}
		h.Headers.Add(hname, []byte(hval))
		h.Headers.Add("x-tenant", []byte(hval))
		a, _ := netip.AddrFromSlice(ip)
		r := &Request{Head: h, Remote: netip.AddrPortFrom(a, port), Local: netip.AddrPortFrom(a, port)}
		fa.rules.enforce.Allowed(r)
		fa.rules.shadow.Allowed(r)
		for i := range leaves {
			x := &leaves[i]
			y := &leaves[(i+1)%len(leaves)]
			vx, vy := x.eval(r), y.eval(r)
			not := node{op: opNot, kids: []node{*x}}
			and := node{op: opAnd, kids: []node{*x, *y}}
			or := node{op: opOr, kids: []node{*x, *y}}
			notAnd := node{op: opNot, kids: []node{and}}
			orNots := node{op: opOr, kids: []node{not, {op: opNot, kids: []node{*y}}}}
			switch {
			case not.eval(r) != !vx:
				t.Fatalf("NOT(x) != !x for leaf %d", i)
			case and.eval(r) != (vx && vy):
				t.Fatalf("AND law broken for leaves %d", i)
			case or.eval(r) != (vx || vy):
				t.Fatalf("OR law broken for leaves %d", i)
			case notAnd.eval(r) != orNots.eval(r):
				t.Fatalf("De Morgan broken for leaves %d", i)
			}
		}
		if np := normPath(urlPath([]byte(target))); len(target) > 0 && target[0] == '/' {
			if len(np) == 0 || np[0] != '/' || strings.Contains(string(np), "//") {
				t.Fatalf("normPath(%q) = %q: not a clean absolute path", target, np)
			}
			for _, seg := range strings.Split(string(np), "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("normPath(%q) = %q keeps a dot segment", target, np)
				}
			}
		}
		h.Target = nil
		r.Head = nil // a connection without head: header and path never match
		fa.rules.enforce.Allowed(r)
	})
}

func collect(n *node, out *[]node) {
	*out = append(*out, *n)
	for i := range n.kids {
		collect(&n.kids[i], out)
	}
}
