package lab

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/proxylab/proxylab/bench/summary"
)

// Machine describes where a run happened.
type Machine struct {
	Host, Kernel, CPU, Governor string
	CPUs                        int
	Pinning                     string
}

// Describe reads the machine description from /proc and /sys.
func Describe(s *Scenario) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Pinning: fmt.Sprintf("proxy %s, load %s, upstream %s", s.CPUs.Proxy, s.CPUs.Load, s.CPUs.Upstream)}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	m.Governor = "n/a"
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"); err == nil {
		m.Governor = strings.TrimSpace(string(b))
	}
	return m
}

// Row is one system × protocol × connections line of the report.
type Row struct {
	System, Protocol       string
	Connections, Rounds    int
	ResponseBytes          int
	RequestBytes           int
	RPS, CPU, HostCPU, P99 summary.Summary
	PeakRSSKiB             int
	CPUsActual             string // affinity the system ran with
	Threads                int
	LatencyMs              []float64        // median over rounds at each of Percentiles
	Ratio                  *summary.Summary // CPU per request vs the baseline, paired by round
	Errors                 uint64
}

// Summarize groups cells into rows, ratios against s.Baseline.
func Summarize(s *Scenario, cells []Cell) []Row {
	type key struct {
		sys, proto       string
		conns, size, req int
	}
	groups := map[key][]Cell{}
	var order []key
	for _, c := range cells {
		k := key{c.System, c.Protocol, c.Connections, c.ResponseBytes, c.RequestBytes}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	var rows []Row
	for _, k := range order {
		g := groups[k]
		var rps, cpu, host, p99 []float64
		byRound := map[int]float64{}
		row := Row{System: k.sys, Protocol: k.proto, Connections: k.conns, ResponseBytes: k.size, RequestBytes: k.req, Rounds: len(g)}
		for _, c := range g {
			rps, cpu, host, p99 = append(rps, c.RPS), append(cpu, c.CPUusPerReq), append(host, c.HostCPUusPerReq), append(p99, c.P99ms)
			row.PeakRSSKiB = max(row.PeakRSSKiB, c.PeakRSSKiB)
			row.CPUsActual, row.Threads = c.ProxyCPUs, max(row.Threads, c.ProxyThreads)
			byRound[c.Round] = c.CPUusPerReq
			row.Errors += c.Errors
		}
		row.RPS, _ = summary.Of(rps)
		row.CPU, _ = summary.Of(cpu)
		row.HostCPU, _ = summary.Of(host)
		row.P99, _ = summary.Of(p99)
		for i := range Percentiles {
			var at []float64
			for _, c := range g {
				if len(c.LatencyMs) == len(Percentiles) {
					at = append(at, c.LatencyMs[i])
				}
			}
			if len(at) == 0 {
				row.LatencyMs = nil
				break
			}
			m, _ := summary.Of(at)
			row.LatencyMs = append(row.LatencyMs, m.Median)
		}
		if base, ok := groups[key{s.Baseline, k.proto, k.conns, k.size, k.req}]; ok {
			baseByRound := map[int]float64{}
			for _, c := range base {
				baseByRound[c.Round] = c.CPUusPerReq
			}
			if r, err := summary.Of(summary.PairedRatios(byRound, baseByRound)); err == nil {
				row.Ratio = &r
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// Write stores results.json, results.csv, report.md, cpu.svg and latency.svg in dir.
func Write(dir string, s *Scenario, m Machine, cells []Cell, profiles []Profile, skipped []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Profiles of an earlier run in the same directory would be mistaken
	// for this one's.
	stale, _ := filepath.Glob(filepath.Join(dir, "*.pprof"))
	for _, f := range stale {
		os.Remove(f)
	}
	for _, p := range profiles {
		if err := os.WriteFile(filepath.Join(dir, p.File), p.raw, 0o644); err != nil {
			return err
		}
	}
	js, _ := json.MarshalIndent(map[string]any{"scenario": s, "machine": m, "cells": cells, "profiles": profiles, "skipped": skipped}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"round", "system", "protocol", "engine", "connections", "response_bytes", "request_bytes", "requests", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "proxy_cpu_us_per_request", "host_cpu_us_per_request", "proxy_peak_rss_kib"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, c := range cells {
		w.Write([]string{strconv.Itoa(c.Round), c.System, c.Protocol, c.Engine, strconv.Itoa(c.Connections), strconv.Itoa(c.ResponseBytes), strconv.Itoa(c.RequestBytes), strconv.FormatUint(c.Requests, 10), strconv.FormatUint(c.Errors, 10),
			ff(c.RPS), ff(c.P50ms), ff(c.P90ms), ff(c.P99ms), ff(c.P999ms), ff(c.CPUusPerReq), ff(c.HostCPUusPerReq), strconv.Itoa(c.PeakRSSKiB)})
	}
	w.Flush()
	f.Close()
	rows := Summarize(s, cells)
	if err := os.WriteFile(filepath.Join(dir, "cpu.svg"), []byte(BarChart(rows)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latency.svg"), []byte(LatencyChart(rows)), 0o644); err != nil {
		return err
	}
	md := Markdown(s, m, rows, profiles, skipped)
	var ab strings.Builder
	writeAB(&ab, cells) // after the table, before the profiles
	if i := strings.Index(md, "\n### CPU profile"); i >= 0 {
		md = md[:i] + ab.String() + md[i:]
	} else {
		md += ab.String()
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644)
}

// Markdown renders the report.
func Markdown(s *Scenario, m Machine, rows []Row, profiles []Profile, skipped []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", s.Name)
	fmt.Fprintf(&b, "- host %s, kernel %s, %d CPUs (%s), governor %s\n- pinning: %s\n", m.Host, m.Kernel, m.CPUs, m.CPU, m.Governor, m.Pinning)
	if got := actualPinning(rows); got != "" {
		fmt.Fprintf(&b, "- in effect (from /proc): %s\n", got)
	}
	load := "closed loop (wrk)"
	if s.Rate > 0 {
		load = fmt.Sprintf("open loop at %.0f req/s (proxybench, coordinated omission avoided)", s.Rate)
	}
	switch h2, grpc := slices.Contains(s.Protocols, "http2"), slices.Contains(s.Protocols, "grpc"); {
	case s.Rate > 0 && h2:
		load += fmt.Sprintf("; http2 with %d streams per connection", s.Streams)
	case h2 || grpc:
		load += fmt.Sprintf("; http2 and grpc closed loop with h2load, %d streams per connection", s.Streams)
	}
	if slices.Contains(s.Protocols, "bolt") || slices.Contains(s.Protocols, "dubbo") {
		load += "; bolt and dubbo with proxybench's RPC clients (one request in flight per connection)"
	}
	fmt.Fprintf(&b, "- load: %s, %v per cell, %d rounds interleaved, baseline %s\n\n", load, s.Duration, s.Rounds, s.Baseline)
	b.WriteString("![proxy CPU per request](cpu.svg)\n\n![latency by percentile](latency.svg)\n\n")
	b.WriteString("| system | protocol | conns | response B | request B | req/s (median) | proxy CPU µs/req (median, min–max) | host CPU µs/req (median) | p99 ms (median) | CPU vs baseline, paired: median (min–max) | peak RSS MiB | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.3f (%.3f–%.3f)", r.Ratio.Median, r.Ratio.Min, r.Ratio.Max)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.0f | %.2f (%.2f–%.2f) | %.2f | %.2f | %s | %.1f | %d |\n", r.System, r.Protocol, r.Connections, r.ResponseBytes, r.RequestBytes, r.RPS.Median,
			r.CPU.Median, r.CPU.Min, r.CPU.Max, r.HostCPU.Median, r.P99.Median, ratio, float64(r.PeakRSSKiB)/1024, r.Errors)
	}
	for _, p := range profiles {
		fmt.Fprintf(&b, "\n### CPU profile: %s, %s, %d connections, %d-byte responses\n\n%.2f CPU seconds sampled over one unmeasured pass; raw profile [%s](%s) (`go tool pprof -top %s`).\n\n| function | flat %% | cum %% |\n|---|---|---|\n",
			p.System, p.Protocol, p.Connections, p.ResponseBytes, p.Seconds, p.File, p.File, p.File)
		for _, f := range p.Top {
			fmt.Fprintf(&b, "| `%s` | %.1f | %.1f |\n", f.Name, f.FlatPct, f.CumPct)
		}
	}
	if len(skipped) > 0 {
		b.WriteString("\nSkipped:\n\n")
		for _, sk := range skipped {
			fmt.Fprintf(&b, "- %s\n", sk)
		}
	}
	return b.String()
}

// BarChart draws median proxy CPU per request per row as an SVG bar chart.
func BarChart(rows []Row) string {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Protocol < rows[j].Protocol })
	const barH, gap, left, width = 22, 8, 230, 420
	maxV := 0.0
	for _, r := range rows {
		maxV = max(maxV, r.CPU.Max)
	}
	if maxV == 0 {
		maxV = 1
	}
	h := len(rows)*(barH+gap) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, left+width+80, h)
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">proxy CPU µs per request (median; whiskers: min–max over rounds)</text>`)
	for i, r := range rows {
		y := 35 + i*(barH+gap)
		w := r.CPU.Median / maxV * width
		color := "#4c78a8"
		if strings.HasPrefix(r.System, "proxylab") {
			color = "#f58518"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s %s c=%d %dB%s</text>`, left-8, y+15, r.System, r.Protocol, r.Connections, r.ResponseBytes, reqLabel(r.RequestBytes))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, left, y, w, barH, color)
		x0, x1 := float64(left)+r.CPU.Min/maxV*width, float64(left)+r.CPU.Max/maxV*width
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="black"/>`, x0, x1, y+barH/2, y+barH/2)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2f</text>`, x1+6, y+15, r.CPU.Median)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// LatencyChart draws each row's latency distribution (median over rounds)
// against percentile, one panel per protocol and connection count. The x
// axis is in "nines" (log10 of 1/(1-p)), as HdrHistogram plots are, so the
// tail gets as much room as the median; the y axis is logarithmic.
func LatencyChart(rows []Row) string {
	type panelKey struct {
		proto            string
		conns, size, req int
	}
	var panels []panelKey
	byPanel := map[panelKey][]Row{}
	lo, hi := math.Inf(1), 0.0
	for _, r := range rows {
		if len(r.LatencyMs) != len(Percentiles) {
			continue
		}
		k := panelKey{r.Protocol, r.Connections, r.ResponseBytes, r.RequestBytes}
		if _, ok := byPanel[k]; !ok {
			panels = append(panels, k)
		}
		byPanel[k] = append(byPanel[k], r)
		for _, v := range r.LatencyMs {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	const pw, ph, left, top, gap = 460, 260, 60, 40, 70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, left+pw+200, top+len(panels)*(ph+gap)+10)
	b.WriteString(`<text x="10" y="18" font-size="14" font-weight="bold">latency by percentile (median over rounds; log scales)</text>`)
	if len(panels) == 0 {
		b.WriteString(`<text x="10" y="40">no latency distribution recorded</text></svg>` + "\n")
		return b.String()
	}
	// y: decades covering [lo, hi]; x: nines from 50% (0.30) to 99.99% (4), max at 4.5.
	ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yhi == ylo {
		yhi++
	}
	nines := func(p float64) float64 {
		if p >= 100 {
			return 4.5
		}
		return math.Log10(100 / (100 - p))
	}
	xMin, xMax := nines(50), 4.5
	colors := []string{"#f58518", "#e45756", "#4c78a8", "#54a24b", "#b279a2", "#9d755d", "#72b7b2"}
	for pi, k := range panels {
		y0 := top + pi*(ph+gap)
		X := func(p float64) float64 { return left + (nines(p)-xMin)/(xMax-xMin)*pw }
		Y := func(ms float64) float64 {
			return float64(y0+ph) - (math.Log10(max(ms, math.Pow(10, ylo)))-ylo)/(yhi-ylo)*ph
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s, %d connections, %d-byte responses%s</text>`, left, y0-8, k.proto, k.conns, k.size, reqLabel(k.req))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, left, y0, pw, ph)
		for d := ylo; d <= yhi; d++ {
			y := Y(math.Pow(10, d))
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g ms</text>`, left, left+pw, y, y, left-4, y+4, math.Pow(10, d))
		}
		for _, p := range Percentiles {
			x := X(p)
			label := strconv.FormatFloat(p, 'f', -1, 64) + "%"
			if p >= 100 {
				label = "max"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x, x, y0, y0+ph, x, y0+ph+14, label)
		}
		for i, r := range byPanel[k] {
			color := colors[i%len(colors)]
			var pts []string
			for j, p := range Percentiles {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", X(p), Y(r.LatencyMs[j])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s: p99 %.2f ms</text>`, left+pw+10, y0+14+i*16, color, r.System, r.LatencyMs[3])
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// reqLabel names a request body size in chart labels ("" for none).
func reqLabel(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" POST %dB", n)
}

// actualPinning lists, per system, the CPUs and threads it actually ran
// with (the first row of each system).
func actualPinning(rows []Row) string {
	var parts []string
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.System] || r.CPUsActual == "" {
			continue
		}
		seen[r.System] = true
		parts = append(parts, fmt.Sprintf("%s on CPUs %s with %d threads", r.System, r.CPUsActual, r.Threads))
	}
	return strings.Join(parts, "; ")
}
