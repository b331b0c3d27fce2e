package upstream

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/foundation/stats"
)

// Outlier configures passive outlier detection: hosts that fail requests in
// a row are ejected from balancing for BaseEjectionTime × (times ejected),
// never more than MaxEjectionPercent of the cluster at once (Envoy's
// semantics and defaults).
type Outlier struct {
	Consecutive5xx            int // 5xx responses or resets before a response
	ConsecutiveConnectFailure int
	Interval                  time.Duration // how often ejections are reconsidered
	BaseEjectionTime          time.Duration
	MaxEjectionPercent        int
}

// OutlierStats count ejections (Envoy's outlier_detection.*).
type OutlierStats struct {
	Ejections, EjectionsOverflow stats.Counter
}

// hostOutlier is a host's passive-health state.
type hostOutlier struct {
	fails5xx, failsConnect atomic.Int32
	ejectedUntil           atomic.Int64 // unix nanoseconds; 0: not ejected
	times                  atomic.Int32 // how often ejected
}

// Ejected reports whether outlier detection has taken the host out.
func (h *Host) Ejected() bool { return h.outlier.ejectedUntil.Load() != 0 }

// available is what balancing considers: healthy and not ejected.
func (h *Host) available() bool { return h.Healthy() && !h.Ejected() }

// ReportResponse records an upstream result: a status (0 for a reset
// before any response) for outlier detection.
func (c *Cluster) ReportResponse(h *Host, status int) {
	o := c.outlier
	if o == nil {
		return
	}
	if status >= 500 || status == 0 {
		if o.Consecutive5xx > 0 && int(h.outlier.fails5xx.Add(1)) >= o.Consecutive5xx {
			c.eject(h, "consecutive 5xx")
		}
		return
	}
	h.outlier.fails5xx.Store(0)
	h.outlier.failsConnect.Store(0)
}

// ReportConnectFailure records a failed connect for outlier detection.
func (c *Cluster) ReportConnectFailure(h *Host) {
	o := c.outlier
	if o == nil {
		return
	}
	if o.ConsecutiveConnectFailure > 0 && int(h.outlier.failsConnect.Add(1)) >= o.ConsecutiveConnectFailure {
		c.eject(h, "consecutive connect failures")
	}
}

func (c *Cluster) eject(h *Host, why string) {
	c.ejectMu.Lock()
	defer c.ejectMu.Unlock()
	h.outlier.fails5xx.Store(0)
	h.outlier.failsConnect.Store(0)
	if h.Ejected() {
		return
	}
	ejected := 0
	hosts := c.Hosts()
	for _, x := range hosts {
		if x.Ejected() {
			ejected++
		}
	}
	// At least one host may always be ejected; beyond that, the percentage.
	if ejected > 0 && (ejected+1)*100 > c.outlier.MaxEjectionPercent*len(hosts) {
		if c.outlierStats != nil {
			c.outlierStats.EjectionsOverflow.Inc(0)
		}
		return
	}
	n := h.outlier.times.Add(1)
	h.outlier.ejectedUntil.Store(time.Now().Add(c.outlier.BaseEjectionTime * time.Duration(n)).UnixNano())
	if c.outlierStats != nil {
		c.outlierStats.Ejections.Inc(0)
	}
	slog.Warn("upstream: host ejected", "cluster", c.Name, "host", h.Address, "reason", why, "for", (c.outlier.BaseEjectionTime * time.Duration(n)).String())
	c.rebalance()
}

// StartOutlierDetection returns ejected hosts to balancing when their time
// is up, until ctx ends.
func (c *Cluster) StartOutlierDetection(ctx context.Context) {
	every(ctx, c.outlier.Interval, func(now time.Time) {
		changed := false
		c.ejectMu.Lock()
		for _, h := range c.Hosts() {
			if until := h.outlier.ejectedUntil.Load(); until != 0 && now.UnixNano() >= until {
				h.outlier.ejectedUntil.Store(0)
				changed = true
				slog.Info("upstream: host back from ejection", "cluster", c.Name, "host", h.Address)
			}
		}
		c.ejectMu.Unlock()
		if changed {
			c.rebalance()
		}
	})
}
