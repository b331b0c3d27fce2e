package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var adminReadyRE = `msg="admin ready" address=`

func (p *proc) adminAddr() string {
	p.t.Helper()
	logs := p.logs()
	i := strings.Index(logs, adminReadyRE)
	if i < 0 {
		p.t.Fatalf("no admin address in log:\n%s", logs)
	}
	rest := logs[i+len(adminReadyRE):]
	return rest[:strings.IndexAny(rest, " \n")]
}

type adminClient struct {
	t     *testing.T
	base  string
	token string
}

func (a adminClient) do(method, path string) (int, string) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, nil)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape parses /stats/prometheus with Prometheus's own text parser.
func (a adminClient) scrape() map[string]*dto.MetricFamily {
	a.t.Helper()
	code, body := a.do("GET", "/stats/prometheus")
	if code != 200 {
		a.t.Fatalf("scrape: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		a.t.Fatalf("exposition does not parse: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want; a
// missing one fails the test.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	if _, ok := fams[name]; !ok {
		t.Fatalf("metric %s missing", name)
	}
	v, ok := lookup(fams, name, want)
	if !ok {
		t.Fatalf("no %s with labels %v", name, want)
	}
	return v
}

// counterOr0 is a labelled counter's value, 0 while no sample with those
// labels exists yet (a counter is exported from its first increment).
func counterOr0(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	v, _ := lookup(fams, name, want)
	return v
}

func lookup(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestAdminMetricsAndAccessLog(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/missing" {
				w.WriteHeader(404)
			}
			io.WriteString(w, "body!")
		}))
		logPath := filepath.Join(t.TempDir(), "access.log")
		cfg := fmt.Sprintf(`transport: %s
admin:
  address: 127.0.0.1:0
  token: s3cret-admin-token
listeners:
  - name: web
    address: 127.0.0.1:0
    http_proxy:
      access_log:
        path: %s
        format: '%%REQ(:METHOD)%% %%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%BYTES_RECEIVED%% %%BYTES_SENT%% %%UPSTREAM_CLUSTER%% "%%REQ(USER-AGENT)%%"'
routes:
  - name: all
    domains: ["*"]
    routes:
      - {prefix: /down, cluster: down}
      - {prefix: /, cluster: up}
clusters:
  - {name: up, hosts: [{address: %q}]}
  - {name: down, connect_timeout: 1s, hosts: [{address: %q}]}
`, tr, logPath, up.addr, closedPort(t))
		p := startProxy(t, cfg)
		a := adminClient{t: t, base: "http://" + p.adminAddr(), token: "s3cret-admin-token"}

		// Known traffic on one keep-alive connection: 3×200, 2×404 from
		// upstream, 1×503 connect failure, 1 POST with a 4-byte body.
		c := dialRaw(t, p.addr("web"))
		for _, req := range []string{
			"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n\r\n",
			"GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
			"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
			"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /down HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			c.send(req)
			c.readResponse(strings.Fields(req)[0])
		}
		c.Close()
		time.Sleep(100 * time.Millisecond) // the close is counted

		if code, _ := a.do("GET", "/stats/prometheus"); code != 200 {
			t.Fatalf("with the token: %d", code)
		}
		if code, _ := (adminClient{t: t, base: a.base}).do("GET", "/stats/prometheus"); code != 401 {
			t.Fatalf("without the token: %d, want 401", code)
		}
		fams := a.scrape()
		l := map[string]string{"listener": "web"}
		for _, tc := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"proxylab_http_downstream_rq_total", l, 6},
			{"proxylab_http_downstream_rq_xx_total", map[string]string{"listener": "web", "code_class": "2xx"}, 3},
			{"proxylab_http_downstream_rq_xx_total", map[string]string{"listener": "web", "code_class": "4xx"}, 2},
			{"proxylab_http_downstream_rq_xx_total", map[string]string{"listener": "web", "code_class": "5xx"}, 1},
			{"proxylab_http_downstream_rq_active", l, 0},
			{"proxylab_http_downstream_rq_time_seconds", l, 6},
			{"proxylab_http_local_replies_total", l, 1},
			{"proxylab_listener_downstream_cx_total", l, 1},
			{"proxylab_listener_downstream_cx_active", l, 0},
			{"proxylab_listener_downstream_cx_destroy_total", map[string]string{"listener": "web", "origin": "remote"}, 1},
			{"proxylab_cluster_upstream_rq_total", map[string]string{"cluster": "up"}, 5},
			{"proxylab_cluster_upstream_rq_xx_total", map[string]string{"cluster": "up", "code_class": "4xx"}, 2},
			{"proxylab_cluster_upstream_rq_time_seconds", map[string]string{"cluster": "up"}, 5},
			{"proxylab_cluster_upstream_cx_total", map[string]string{"cluster": "up"}, 1},
			{"proxylab_cluster_upstream_cx_connect_fail_total", map[string]string{"cluster": "down"}, 1},
			{"proxylab_cluster_host_rq_total", map[string]string{"cluster": "up", "host": up.addr}, 5},
			{"proxylab_access_log_written_total", l, 6},
			{"proxylab_access_log_dropped_total", l, 0},
			{"proxylab_transport_accepts_total", map[string]string{"transport": tr}, 1},
		} {
			if got := value(t, fams, tc.name, tc.labels); got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
			}
		}
		if rx := value(t, fams, "proxylab_listener_downstream_cx_rx_bytes_total", l); rx < 100 {
			t.Errorf("rx bytes %v", rx)
		}

		// The access log, written off the hot path.
		data, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		want := []string{
			`GET /a 200 - 0 5 up "t/1"`,
			`GET /b 200 - 0 5 up "-"`,
			`POST /c 200 - 4 5 up "-"`,
			`GET /missing 404 - 0 5 up "-"`,
			`GET /missing 404 - 0 5 up "-"`,
			`GET /down 503 UF 0 0 down "-"`,
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("access log:\n%s\nwant:\n%s", data, strings.Join(want, "\n"))
		}

		// Readable stats, config dump without the secret, health flips.
		if code, body := a.do("GET", "/stats?format=json"); code != 200 || !strings.Contains(body, `"name":"proxylab_http_downstream_rq_total"`) {
			t.Errorf("/stats json: %d %.200s", code, body)
		}
		code, dump := a.do("GET", "/config_dump")
		if code != 200 || strings.Contains(dump, "s3cret-admin-token") || !strings.Contains(dump, "token: '[redacted]'") {
			t.Errorf("config dump leaks or lacks the redaction: %d\n%s", code, dump)
		}
		if code, body := a.do("GET", "/clusters?format=json"); code != 200 || !strings.Contains(body, `"address":"`+up.addr+`"`) || !strings.Contains(body, `"requests":5`) {
			t.Errorf("/clusters: %d %s", code, body)
		}
		if code, body := a.do("GET", "/listeners"); code != 200 || !strings.Contains(body, "web::"+p.addr("web")+"::http_proxy") {
			t.Errorf("/listeners: %d %s", code, body)
		}
		noToken := adminClient{t: t, base: a.base}
		if code, _ := noToken.do("GET", "/ready"); code != 200 {
			t.Errorf("/ready without token: %d", code)
		}
		if code, _ := a.do("GET", "/healthcheck/fail"); code != 405 {
			t.Errorf("GET /healthcheck/fail: %d, want 405 (it changes state)", code)
		}
		a.do("POST", "/healthcheck/fail")
		if code, _ := noToken.do("GET", "/ready"); code != 503 {
			t.Errorf("/ready after fail: %d", code)
		}
		a.do("POST", "/healthcheck/ok")
		if code, _ := noToken.do("GET", "/ready"); code != 200 {
			t.Errorf("/ready after ok: %d", code)
		}
		if code, _ := a.do("POST", "/logging?level=warn"); code != 200 {
			t.Errorf("/logging: %d", code)
		}
		if code, _ := a.do("POST", "/logging?level=loud"); code != 400 {
			t.Errorf("/logging bad level: %d", code)
		}
		if code, body := a.do("GET", "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
			t.Errorf("pprof: %d", code)
		}
	})
}
