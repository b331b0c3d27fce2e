package server

import (
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/proxy"
	"github.com/proxylab/proxylab/core/tracing"
)

// identity builds an http_proxy listener's request id and tracing settings
// (nil when neither is configured: the proxy skips the step).
func identity(h *config.HTTPProxy) *proxy.Identity {
	if h.RequestID == nil && h.Tracing == nil {
		return nil
	}
	id := &proxy.Identity{}
	if r := h.RequestID; r != nil {
		id.RequestID, id.PreserveExternal, id.Generate, id.AlwaysSetResponse = true, r.PreserveExternal, r.Generate, r.AlwaysSetResponse
	}
	if t := h.Tracing; t != nil {
		id.Tracing, id.Sampling = true, t.RandomSampling/100
		id.NewFormat, _ = tracing.ParseFormat(t.Format) // validated
	}
	return id
}
