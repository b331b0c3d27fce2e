package admin

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxylab/proxylab/foundation/stats"
)

// AddCollector exports c's metrics too (proxylab_<name>), e.g. the
// process's hot upgrade counters. Call before Start.
func (a *Server) AddCollector(c stats.Collector) { a.reg.MustRegister(pluginCollector{c}) }

// pluginCollector is an unchecked Prometheus collector over a
// stats.Collector: its metric names are the plugin's own.
type pluginCollector struct{ c stats.Collector }

func (pluginCollector) Describe(chan<- *prometheus.Desc) {}

func (p pluginCollector) Collect(ch chan<- prometheus.Metric) { p.c.Collect(emitTo(ch)) }

// ListenerFD is the admin listener's socket (a hot upgrade passes it on);
// valid until Close.
func (a *Server) ListenerFD() (int, error) {
	sc, ok := a.ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("admin: the listener has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	return fd, nil
}
