package peers

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var scenarios = map[string]Scenario{
	"http1": {Protocol: "http1", Listen: "127.0.0.1:19080", Upstreams: []string{"127.0.0.1:19090", "127.0.0.1:19091"}, Workers: 1},
	"tcp":   {Protocol: "tcp", Listen: "127.0.0.1:19081", Upstreams: []string{"127.0.0.1:19090"}, Workers: 2, MaxConns: 4000},
	"http2": {Protocol: "http2", Listen: "127.0.0.1:19082", Upstreams: []string{"127.0.0.1:19090"}, Workers: 1},
	"grpc":  {Protocol: "grpc", Listen: "127.0.0.1:19083", Upstreams: []string{"127.0.0.1:19092"}, Workers: 2},
	"http1-tls": {Protocol: "http1", Listen: "127.0.0.1:19084", Upstreams: []string{"127.0.0.1:19090"}, Workers: 1,
		TLS: &TLSFiles{Cert: "testdata/server.pem", Key: "testdata/server-key.pem", Combined: "testdata/server-combined.pem"}},
	"http2-tls": {Protocol: "http2", Listen: "127.0.0.1:19085", Upstreams: []string{"127.0.0.1:19090"}, Workers: 1,
		TLS: &TLSFiles{Cert: "testdata/server.pem", Key: "testdata/server-key.pem", Combined: "testdata/server-combined.pem"}},
	"bolt":  {Protocol: "bolt", Listen: "127.0.0.1:19087", Upstreams: []string{"127.0.0.1:19093"}, Workers: 1},
	"dubbo": {Protocol: "dubbo", Listen: "127.0.0.1:19088", Upstreams: []string{"127.0.0.1:19094"}, Workers: 1},
	"tcp-tls": {Protocol: "tcp", Listen: "127.0.0.1:19086", Upstreams: []string{"127.0.0.1:19090"}, Workers: 1,
		TLS: &TLSFiles{Cert: "testdata/server.pem", Key: "testdata/server-key.pem", Combined: "testdata/server-combined.pem"}},
}

// TestGolden pins every generator's output; run with -update after an
// intended change and review the diff.
func TestGolden(t *testing.T) {
	for _, sys := range Names() {
		for sc, s := range scenarios {
			got, err := Generators[sys](s)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", sys+"-"+sc+".golden")
			if *update {
				os.WriteFile(path, []byte(got), 0o644)
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s %s changed:\n%s", sys, sc, got)
			}
		}
	}
}

// TestEnvoyAndProxylabAreYAML: the YAML outputs parse.
func TestEnvoyAndProxylabAreYAML(t *testing.T) {
	for _, sys := range []string{"envoy", "proxylab", "mosn"} {
		for sc, s := range scenarios {
			out, _ := Generators[sys](s)
			var v any
			if err := yaml.Unmarshal([]byte(out), &v); err != nil {
				t.Errorf("%s %s: %v\n%s", sys, sc, err, out)
			}
		}
	}
}

// TestPeersAcceptTheirConfigs runs the real haproxy and nginx config checks
// where they are installed (make test installs them).
func TestPeersAcceptTheirConfigs(t *testing.T) {
	for _, tc := range []struct {
		sys  string
		args func(path string) []string
	}{
		{"haproxy", func(p string) []string { return []string{"-c", "-f", p} }},
		{"nginx", func(p string) []string { return []string{"-t", "-p", "/usr/share/nginx", "-c", p} }},
	} {
		bin, err := exec.LookPath(tc.sys)
		if err != nil {
			t.Logf("%s not installed: skipped", tc.sys)
			continue
		}
		for sc, s := range scenarios {
			if tc.sys == "nginx" && s.l4() {
				if _, err := os.Stat("/usr/share/nginx/modules/ngx_stream_module.so"); err != nil {
					continue
				}
			}
			out, _ := Generators[tc.sys](s)
			// The TLS scenarios name the test certificate in testdata/
			// (a throwaway, self-signed for 10 years); the checkers need it
			// by absolute path.
			abs, _ := filepath.Abs("testdata")
			out = strings.ReplaceAll(out, "testdata/", abs+"/")
			path := filepath.Join(t.TempDir(), tc.sys+".conf")
			os.WriteFile(path, []byte(out), 0o644)
			if msg, err := exec.Command(bin, tc.args(path)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects its %s config: %v\n%s\n%s", tc.sys, sc, err, msg, out)
			}
		}
	}
}

func TestBadScenario(t *testing.T) {
	for _, g := range Generators {
		if _, err := g(Scenario{Protocol: "udp", Listen: "a:1", Upstreams: []string{"b:2"}}); err == nil {
			t.Error("unknown protocol accepted")
		}
		if _, err := g(Scenario{Protocol: "http1"}); err == nil {
			t.Error("missing addresses accepted")
		}
	}
}

// codecs are the proxylab binary's L7 codecs as validation sees them.
var codecs = []config.Codec{{Name: "http2", Carries: "http"}, {Name: "bolt", Carries: "bolt"}, {Name: "dubbo", Carries: "dubbo"}, {Name: "http1", Carries: "http"}}

func TestProxylabConfigValidates(t *testing.T) {
	for sc, s := range scenarios {
		out, _ := Proxylab(s)
		if _, err := config.Parse([]byte(out), config.Known{Transports: []string{"netpoll"}, LBs: []string{"round_robin"}, Engines: []string{"gotls"}, Codecs: codecs, DefaultProtocol: "http1"}); err != nil {
			t.Errorf("%s: %v\n%s", sc, err, out)
		}
	}
	s := scenarios["http1"]
	s.Admin = "127.0.0.1:29901"
	out, _ := Proxylab(s)
	c, err := config.Parse([]byte(out), config.Known{Transports: []string{"netpoll"}, LBs: []string{"round_robin"}, Codecs: codecs, DefaultProtocol: "http1"})
	if err != nil || c.Admin == nil || c.Admin.Address != s.Admin {
		t.Fatalf("admin address not carried: %v\n%s", err, out)
	}
}
