package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestBuildMatchesParse: a config built in Go with SetDefaults, finished by
// Build, equals what Parse makes of the same file: one set of defaults,
// one validation path.
func TestBuildMatchesParse(t *testing.T) {
	yml := `
listeners:
  - name: web
    address: 127.0.0.1:0
    http_proxy:
      codec: http1
      request_timeout: 3s
  - name: raw
    address: 127.0.0.1:1
    tcp_proxy:
      cluster: up
routes:
  - name: all
    domains: ["*"]
    routes:
      - prefix: /
        cluster: up
        retry_policy:
          retry_on: [5xx]
clusters:
  - name: up
    connect_timeout: 2s
    outlier_detection:
      consecutive_5xx: 3
    hosts:
      - address: 127.0.0.1:9
`
	want, err := Parse([]byte(yml), known)
	if err != nil {
		t.Fatal(err)
	}
	got := &Config{}
	SetDefaults(got)
	web := Listener{Name: "web", Address: "127.0.0.1:0", HTTP: &HTTPProxy{}}
	SetDefaults(web.HTTP)
	web.HTTP.Codec, web.HTTP.RequestTimeout = "http1", Duration(3*time.Second)
	raw := Listener{Name: "raw", Address: "127.0.0.1:1", TCP: &TCPProxy{}}
	SetDefaults(raw.TCP)
	raw.TCP.Cluster = "up"
	var r Route
	SetDefaults(&r)
	r.Prefix, r.Cluster, r.RetryPolicy = "/", "up", &RetryPolicy{}
	SetDefaults(r.RetryPolicy)
	r.RetryPolicy.RetryOn = []string{"5xx"}
	var c Cluster
	SetDefaults(&c)
	c.Name, c.ConnectTimeout, c.OutlierDetection = "up", Duration(2*time.Second), &OutlierDetection{}
	SetDefaults(c.OutlierDetection)
	c.OutlierDetection.Consecutive5xx = 3
	h := Host{Address: "127.0.0.1:9"}
	SetDefaults(&h)
	c.Hosts = []Host{h}
	got.Listeners, got.Clusters = []Listener{web, raw}, []Cluster{c}
	got.Routes = []VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []Route{r}}}
	if err := Build(got, known, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		gd, _ := got.Dump()
		wd, _ := want.Dump()
		t.Fatalf("built:\n%s\nparsed:\n%s", gd, wd)
	}
}

// TestBuildErrorsAndDynamic: Build reports Parse's field paths; Dynamic
// allows only no listener and clusters without hosts.
func TestBuildErrorsAndDynamic(t *testing.T) {
	var c Cluster
	SetDefaults(&c)
	c.Name = "up"
	cfg := &Config{Clusters: []Cluster{c}}
	SetDefaults(cfg)
	err := Build(cfg, known, BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "clusters[0].hosts: at least one host is required") || !strings.Contains(err.Error(), "listeners: at least one listener") {
		t.Fatalf("static build: %v", err)
	}
	cfg = &Config{Clusters: []Cluster{c}}
	SetDefaults(cfg)
	if err := Build(cfg, known, BuildOptions{Dynamic: true}); err != nil {
		t.Fatalf("dynamic build: %v", err)
	}
	cfg.Clusters[0].LB = "nope"
	if err := Build(cfg, known, BuildOptions{Dynamic: true}); err == nil || !strings.Contains(err.Error(), `clusters[0].lb: unknown policy "nope"`) {
		t.Fatalf("dynamic build must still validate: %v", err)
	}
}
