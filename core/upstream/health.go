package upstream

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/proxylab/proxylab/foundation/stats"
)

// HealthCheck configures active health checking of a cluster's hosts.
type HealthCheck struct {
	Type               string // "tcp" (connect) or "http" (GET Path)
	Path               string
	Host               string // Host header for http checks; default: the cluster name
	ExpectedStatuses   []int  // http: default 200
	Interval, Jitter   time.Duration
	Timeout            time.Duration
	HealthyThreshold   int // consecutive successes to mark a host healthy
	UnhealthyThreshold int // consecutive failures to mark it unhealthy
}

// HealthStats count a cluster's health checks (Envoy's health_check.*).
type HealthStats struct {
	Attempts, Successes, Failures, Ejections, Recoveries stats.Counter
}

// StartHealthChecks checks every host on its own schedule until ctx ends;
// the first check runs at once. Hosts start healthy.
func (c *Cluster) StartHealthChecks(ctx context.Context, hc HealthCheck, st *HealthStats) {
	if len(hc.ExpectedStatuses) == 0 {
		hc.ExpectedStatuses = []int{200}
	}
	if hc.Host == "" {
		hc.Host = c.Name
	}
	c.hostsMu.Lock()
	defer c.hostsMu.Unlock()
	for i, h := range c.Hosts() {
		go c.checkLoop(ctx, h, uint64(i), hc, st)
	}
	// Hosts added later (DNS) are checked too; removed ones stop.
	c.onAdd = slices.DeleteFunc(c.onAdd, func(a addHook) bool { return a.ctx.Err() != nil }) // stopped checkers
	c.onAdd = append(c.onAdd, addHook{ctx, func(h *Host) { go c.checkLoop(ctx, h, 0, hc, st) }})
}

func (c *Cluster) checkLoop(ctx context.Context, h *Host, key uint64, hc HealthCheck, st *HealthStats) {
	var ok, bad int
	for {
		err := check(ctx, h.Address, hc)
		if ctx.Err() != nil {
			return // stopped (reload): a cut check is no verdict
		}
		if st != nil {
			st.Attempts.Inc(key)
		}
		if err == nil {
			ok, bad = ok+1, 0
			if st != nil {
				st.Successes.Inc(key)
			}
			if ok >= hc.HealthyThreshold && !h.Healthy() && c.SetHealthy(h, true) {
				slog.Info("upstream: host healthy again", "cluster", c.Name, "host", h.Address)
				if st != nil {
					st.Recoveries.Inc(key)
				}
			}
		} else {
			ok, bad = 0, bad+1
			if st != nil {
				st.Failures.Inc(key)
			}
			if bad >= hc.UnhealthyThreshold && h.Healthy() && c.SetHealthy(h, false) {
				slog.Warn("upstream: host failed health checks", "cluster", c.Name, "host", h.Address, "err", err)
				if st != nil {
					st.Ejections.Inc(key)
				}
			}
		}
		wait := hc.Interval
		if hc.Jitter > 0 {
			wait += rand.N(hc.Jitter)
		}
		select {
		case <-ctx.Done():
			return
		case <-h.removed:
			return
		case <-time.After(wait):
		}
	}
}

// check runs one health check against addr.
func check(ctx context.Context, addr string, hc HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if hc.Type != "http" {
		return nil
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: proxylab-health-check\r\nConnection: close\r\n\r\n", hc.Path, hc.Host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if !slices.Contains(hc.ExpectedStatuses, resp.StatusCode) {
		return fmt.Errorf("upstream: health check got status %d", resp.StatusCode)
	}
	return nil
}
