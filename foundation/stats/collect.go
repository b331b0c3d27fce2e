package stats

// The one generic hook through which a plugin (a transport, an engine, a
// codec) exports its own metrics: the admin API asks at scrape time and
// turns what is emitted into Prometheus metrics named proxylab_<name>, so
// nothing above the plugin lists its counters.

// MetricKind says how a value behaves.
type MetricKind uint8

const (
	// CounterKind only goes up.
	CounterKind MetricKind = iota
	// GaugeKind goes up and down.
	GaugeKind
)

// Label is one name=value pair of a metric.
type Label struct{ Name, Value string }

// Emit reports one value. name has no proxylab_ prefix; help and the label
// names must be the same for every value emitted under one name.
type Emit func(name, help string, kind MetricKind, value float64, labels ...Label)

// Collector is implemented by plugins that export metrics. Collect runs at
// scrape time, from the admin goroutine; it must not block.
type Collector interface {
	Collect(emit Emit)
}

// WithLabels returns an Emit that puts labels before each value's own.
func WithLabels(emit Emit, labels ...Label) Emit {
	return func(name, help string, kind MetricKind, value float64, own ...Label) {
		emit(name, help, kind, value, append(append(make([]Label, 0, len(labels)+len(own)), labels...), own...)...)
	}
}
