package server

import (
	"io"
	"log/slog"

	"github.com/proxylab/proxylab/core/config"
)

// Filter factories may hold resources (an authorization or rate limit
// service's gRPC client). Each config decodes its own; a factory lives as
// long as a listener runs it. These close the ones a reload leaves unused.

// closeFactories closes the http_filters factories of h that hold
// resources.
func closeFactories(h *config.HTTPProxy) {
	if h == nil {
		return
	}
	for _, f := range h.HTTPFilters {
		closeFactory(f.Name, f.Factory)
	}
}

// closeFactory closes a filter factory that holds resources; a failed
// close changes nothing for the listener, which no longer runs it.
func closeFactory(name string, f any) {
	if c, ok := f.(io.Closer); ok {
		if err := c.Close(); err != nil {
			slog.Debug("server: closing a filter", "filter", name, "error", err)
		}
	}
}

// keepFactories makes an unchanged listener's entry in the new config name
// the factories it runs (so the config in force describes what runs) and
// closes the ones the new config decoded for it, unused.
func keepFactories(running, next config.Listener) {
	if running.HTTP == nil || next.HTTP == nil || running.HTTP == next.HTTP {
		return
	}
	closeFactories(next.HTTP)
	for i := range next.HTTP.HTTPFilters {
		next.HTTP.HTTPFilters[i].Factory = running.HTTP.HTTPFilters[i].Factory
	}
}
