package admin

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/stats"
)

// Sections other parts of the process (the xDS client) add to the admin
// API: their metrics and a /config_dump section. Both are registered
// before Start and read from the admin goroutines afterwards.

// pluginCollector turns a stats.Collector into Prometheus metrics at
// scrape time (unchecked: its label sets follow what it reports).
type pluginCollector struct{ c stats.Collector }

func (pluginCollector) Describe(chan<- *prometheus.Desc) {}

func (p pluginCollector) Collect(ch chan<- prometheus.Metric) { p.c.Collect(emitTo(ch)) }

// AddCollector exports c's metrics on /stats and /stats/prometheus.
// Call it before Start.
func (a *Server) AddCollector(c stats.Collector) { a.reg.MustRegister(pluginCollector{c}) }

// AddDump adds a section key to /config_dump, rendered from f at each
// request (f must be safe to call from the admin goroutine). Call it
// before Start.
func (a *Server) AddDump(key string, f func() any) {
	a.dumps = append(a.dumps, dumpSection{key, f})
}

type dumpSection struct {
	key string
	f   func() any
}

// writeDumps writes each section as a YAML document after the config's.
func (a *Server) writeDumps(w io.Writer) {
	for _, d := range a.dumps {
		out, err := yaml.Marshal(map[string]any{d.key: d.f()})
		if err != nil {
			out = []byte(d.key + ": {error: " + err.Error() + "}\n")
		}
		io.WriteString(w, "---\n")
		w.Write(out)
	}
}
