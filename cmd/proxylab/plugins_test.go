package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestValidatePluginSettings: settings a transport or engine owns are
// decoded and checked by the plugin, and `proxylab validate` reports each
// problem with its path in the file, as for the common schema.
func TestValidatePluginSettings(t *testing.T) {
	dir := t.TempDir()
	if err := writeCerts(dir, []string{"localhost"}, "ecdsa", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := writeGMCerts(dir, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	rest := "listeners:\n  - {name: t, address: \"127.0.0.1:0\", tcp_proxy: {cluster: c}}\nclusters:\n  - {name: c, hosts: [{address: \"127.0.0.1:9\"}]}\n"
	tlsListener := func(tls string) string {
		return "listeners:\n  - name: t\n    address: \"127.0.0.1:0\"\n    tcp_proxy: {cluster: c}\n    tls:\n" + tls +
			"clusters:\n  - {name: c, hosts: [{address: \"127.0.0.1:9\"}]}\n"
	}
	gmPair := fmt.Sprintf("{cert_file: %q, key_file: %q, enc_cert_file: %q, enc_key_file: %q}",
		f("server-sign.pem"), f("server-sign-key.pem"), f("server-enc.pem"), f("server-enc-key.pem"))
	cases := []struct {
		name, cfg string
		want      []string // nil: valid
	}{
		{"dpdk checked when selected", "transport: dpdk\ndpdk: {queues: 65, address: nope, gateway: x}\n" + rest, []string{
			"dpdk.port: required with transport dpdk (e.g. net_af_packet0)",
			`dpdk.address: want an IPv4 address with prefix, e.g. 10.0.0.2/24, got "nope"`,
			`dpdk.gateway: want an IPv4 address, got "x"`,
			"dpdk.queues: must be between 0 and 64, got 65",
		}},
		{"dpdk not selected", "dpdk: {queues: 65}\n" + rest, nil},
		{"dpdk unknown field", "dpdk: {portt: x}\n" + rest, []string{"dpdk.portt: unknown field (known: eal, port, address, gateway, queues) (line 1)"}},
		{"dpdk bad type", "transport: dpdk\ndpdk: {port: p, address: 10.0.0.2/24, queues: many}\n" + rest, []string{`dpdk.queues: expected a whole number, got "many" (line 2)`}},
		{"sockmap", "sockmap: {cgroup: relative, splice: maybe}\n" + rest, []string{`sockmap.splice: expected a boolean (true/false), got "maybe"`}},
		{"sockmap cgroup", "sockmap: {cgroup: relative}\n" + rest, []string{`sockmap.cgroup: must be an absolute path to a cgroup v2 directory, got "relative"`}},
		{"unknown top-level block", "sockmapp: {}\n" + rest, []string{"sockmapp: unknown field (known: transport, workers, cpus, drain_timeout, reuse_port, demo_upstream, admin, stats, listeners, routes, clusters, dpdk, sockmap) (line 1)"}},
		{"gm entry without the encryption pair", tlsListener(fmt.Sprintf("      engine: gm\n      certificates: [{cert_file: %q, key_file: %q}]\n", f("server-sign.pem"), f("server-sign-key.pem"))),
			[]string{"listeners[0].tls.certificates[0]: engine gm needs enc_cert_file and enc_key_file (TLCP's encryption certificate) besides cert_file and key_file"}},
		{"gm entry with a missing file", tlsListener(fmt.Sprintf("      engine: gm\n      certificates: [{cert_file: %q, key_file: %q, enc_cert_file: /nonexistent.pem, enc_key_file: %q}]\n", f("server-sign.pem"), f("server-sign-key.pem"), f("server-enc-key.pem"))),
			[]string{"listeners[0].tls.certificates[0].enc_cert_file: stat /nonexistent.pem: no such file or directory"}},
		{"gm entry", tlsListener("      engine: gm\n      certificates: [" + gmPair + "]\n"), nil},
		{"gotls entry with gm keys", tlsListener(fmt.Sprintf("      certificates: [{cert_file: %q, key_file: %q, enc_cert_file: x}]\n", f("server.pem"), f("server-key.pem"))),
			[]string{"listeners[0].tls.certificates[0].enc_cert_file: unknown field (known: cert_file, key_file, pkcs11)"}},
		{"tlcp beside gm", tlsListener("      engine: gm\n      certificates: [" + gmPair + "]\n      tlcp: {certificates: [" + gmPair + "]}\n"),
			[]string{"listeners[0].tls.tlcp: the listener's engine is already gm; tlcp adds TLCP beside another engine's TLS"}},
		{"tlcp checks", tlsListener(fmt.Sprintf("      certificates: [{cert_file: %q, key_file: %q}]\n      tlcp: {client_auth: request, certificates: [{cert_file: %q, key_file: %q}], bogus: 1}\n", f("server.pem"), f("server-key.pem"), f("server-sign.pem"), f("server-sign-key.pem"))),
			[]string{"listeners[0].tls.tlcp.bogus: unknown field (known: certificates, client_auth, client_ca)"}},
		{"tlcp policy", tlsListener(fmt.Sprintf("      certificates: [{cert_file: %q, key_file: %q}]\n      tlcp: {client_auth: request, certificates: [{cert_file: %q, key_file: %q}]}\n", f("server.pem"), f("server-key.pem"), f("server-sign.pem"), f("server-sign-key.pem"))),
			[]string{
				`listeners[0].tls.tlcp.client_auth: unknown policy "request" (none, require)`,
				"listeners[0].tls.tlcp.certificates[0]: engine gm needs enc_cert_file and enc_key_file",
			}},
		{"tlcp empty", tlsListener(fmt.Sprintf("      certificates: [{cert_file: %q, key_file: %q}]\n      tlcp: {client_auth: require}\n", f("server.pem"), f("server-key.pem"))),
			[]string{"listeners[0].tls.tlcp.certificates: at least one certificate is required", "listeners[0].tls.tlcp.client_ca: required when client_auth is require"}},
		{"tlcp beside gotls", tlsListener(fmt.Sprintf("      certificates: [{cert_file: %q, key_file: %q}]\n      tlcp: {certificates: [%s]}\n", f("server.pem"), f("server-key.pem"), gmPair)), nil},
		{"gm client cert", fmt.Sprintf("%sclusters:\n  - {name: c, tls: {engine: gm, ca_file: %q, client_cert: {cert_file: %q, key_file: %q}}, hosts: [{address: \"127.0.0.1:9\"}]}\n",
			"listeners:\n  - {name: t, address: \"127.0.0.1:0\", tcp_proxy: {cluster: c}}\n", f("sm2-ca.pem"), f("client-sign.pem"), f("client-sign-key.pem")),
			[]string{"clusters[0].tls.client_cert: engine gm needs enc_cert_file and enc_key_file"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			if err := os.WriteFile(path, []byte(c.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binPath, "validate", "-c", path).CombinedOutput()
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, out)
				}
				return
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), path+": "+w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
		})
	}
}
