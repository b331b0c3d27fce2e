package server

import (
	"log/slog"

	"github.com/proxylab/proxylab/core/accesslog"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/tracing"
)

// identity builds an http_proxy listener's request id and tracing settings
// (nil when neither is configured: the proxy skips the step).
// A listener exporting spans gets its exporter from info (the running one,
// carried over a reload when the otlp block is unchanged) or a new one, kept
// in info.Spans for closeInfo.
func identity(h *config.HTTPProxy, info *ListenerInfo, log *slog.Logger) (*proxy.Identity, error) {
	if h.RequestID == nil && h.Tracing == nil {
		return nil, nil
	}
	id := &proxy.Identity{}
	if r := h.RequestID; r != nil {
		id.RequestID, id.PreserveExternal, id.Generate, id.AlwaysSetResponse = true, r.PreserveExternal, r.Generate, r.AlwaysSetResponse
	}
	if t := h.Tracing; t != nil {
		id.Tracing, id.Sampling = true, t.RandomSampling/100
		id.NewFormat, _ = tracing.ParseFormat(t.Format) // validated
		if o := t.OTLP; o != nil {
			if info.Spans == nil {
				e, err := tracing.NewExporter(tracing.ExportOptions{Endpoint: o.Endpoint, Service: o.ServiceName,
					Queue: o.Queue, Batch: o.Batch, Interval: o.FlushInterval.D(), Timeout: o.Timeout.D(), Log: log})
				if err != nil {
					return nil, err
				}
				info.Spans = e
			}
			id.Spans = info.Spans
		}
	}
	return id, nil
}

// sameOTLP: both listeners export spans to the same collector the same way
// (a reload keeps the running exporter).
func sameOTLP(a, b *config.HTTPProxy) bool {
	if a == nil || b == nil || a.Tracing == nil || b.Tracing == nil || a.Tracing.OTLP == nil || b.Tracing.OTLP == nil {
		return false
	}
	return *a.Tracing.OTLP == *b.Tracing.OTLP
}

// openAccessLog is a listener's access log: the running one (kept by a
// reload, one writer per file) or a new one in format (the default when
// the block has none), kept in info for closeInfo.
func openAccessLog(al *config.AccessLog, def string, info *ListenerInfo) (*accesslog.Logger, error) {
	if info.AccessLog != nil {
		return info.AccessLog, nil
	}
	format := al.Format
	if format == "" {
		format = def
	}
	f, err := accesslog.ParseFormat(format)
	if err != nil {
		return nil, err
	}
	lg, err := accesslog.Open(al.Path, f, al.Buffer)
	if err != nil {
		return nil, err
	}
	info.AccessLog = lg
	return lg, nil
}
