package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// loadH2 runs one HTTP/2 cell with h2load: conns connections, each keeping
// s.Streams requests in flight. Latency percentiles come from h2load's
// per-request log (h2load itself prints only min/max/mean). For grpc every
// request is a unary call of the gRPC upstream's UnaryCall asking for size
// bytes; h2load checks the HTTP status only, so grpc-status is not checked
// here (the integration tests check it).
func loadH2(ctx context.Context, s *Scenario, tools Tools, ph phase, port int, pt point, d time.Duration) (Cell, error) {
	protocol, conns, size := ph.proto, pt.conns, pt.size
	dir, err := os.MkdirTemp("", "h2load")
	if err != nil {
		return Cell{}, fmt.Errorf("lab: %w", err)
	}
	defer os.RemoveAll(dir)
	logFile := filepath.Join(dir, "requests.log")
	url := fmt.Sprintf("%s://127.0.0.1:%d/", ph.scheme(), port)
	if s.Upstream == "proxybench" {
		url += "?size=" + strconv.Itoa(size)
	}
	args := []string{"-c", s.CPUs.Load, "h2load", "-t1", "-c", strconv.Itoa(conns), "-m", strconv.Itoa(s.Streams),
		"-D", strconv.Itoa(max(int(d.Seconds()), 1)), "--log-file", logFile}
	if pt.req > 0 {
		body := filepath.Join(dir, "request.bin")
		if err := os.WriteFile(body, bytes.Repeat([]byte("x"), pt.req), 0o644); err != nil {
			return Cell{}, fmt.Errorf("lab: %w", err)
		}
		args = append(args, "-d", body)
	}
	if protocol == "grpc" {
		body := filepath.Join(dir, "request.bin")
		if err := os.WriteFile(body, grpcUnaryRequest(size), 0o644); err != nil {
			return Cell{}, fmt.Errorf("lab: %w", err)
		}
		url = fmt.Sprintf("%s://127.0.0.1:%d/grpc.testing.TestService/UnaryCall", ph.scheme(), port)
		args = append(args, "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers")
	}
	out, err := exec.CommandContext(ctx, "taskset", append(args, url)...).CombinedOutput()
	if err != nil {
		return Cell{}, fmt.Errorf("lab: h2load: %w: %s", err, out)
	}
	c, err := parseH2load(string(out))
	if err != nil {
		return c, err
	}
	lat, err := readH2loadLog(logFile)
	if err != nil {
		return c, err
	}
	c.LatencyMs = percentilesMs(lat)
	c.setPercentiles()
	return c, nil
}

// grpcUnaryRequest is one length-prefixed gRPC message: a SimpleRequest
// with response_size (field 2, varint) set.
func grpcUnaryRequest(size int) []byte {
	msg := []byte{0x10}
	msg = binary.AppendUvarint(msg, uint64(size))
	frame := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

var (
	h2Finished = regexp.MustCompile(`finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Traffic  = regexp.MustCompile(`traffic: ([\d.]+)(B|KB|MB|GB) \((\d+)\) total`)
)

// parseH2load reads h2load's summary: requests done, failures (failed,
// errored, timed out and non-2xx), req/s and bytes received.
func parseH2load(out string) (Cell, error) {
	var c Cell
	f := h2Finished.FindStringSubmatch(out)
	r := h2Requests.FindStringSubmatch(out)
	st := h2Status.FindStringSubmatch(out)
	if f == nil || r == nil || st == nil {
		return c, fmt.Errorf("lab: unexpected h2load output: %q", out)
	}
	c.RPS, _ = strconv.ParseFloat(f[3], 64)
	// done = succeeded + failed (failed counts errored and timed out);
	// succeeded counts any status, so non-2xx are errors too.
	succeeded, _ := strconv.ParseUint(r[4], 10, 64)
	failed, _ := strconv.ParseUint(r[5], 10, 64)
	ok2xx, _ := strconv.ParseUint(st[1], 10, 64)
	c.Requests = ok2xx
	c.Errors = failed + succeeded - min(ok2xx, succeeded)
	if t := h2Traffic.FindStringSubmatch(out); t != nil {
		c.ReadBytes, _ = strconv.ParseFloat(t[3], 64)
	}
	return c, nil
}

// readH2loadLog reads the per-request durations (µs, third column) of an
// h2load --log-file.
func readH2loadLog(path string) ([]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lab: h2load log: %w", err)
	}
	var us []float64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(string(f[2]), 64)
		if err == nil {
			us = append(us, v)
		}
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("lab: h2load log %s has no requests", path)
	}
	return us, nil
}

// percentilesMs is the latency at each of Percentiles (nearest rank), in
// ms, from durations in µs.
func percentilesMs(us []float64) []float64 {
	slices.Sort(us)
	out := make([]float64, 0, len(Percentiles))
	for _, p := range Percentiles {
		i := int(math.Ceil(p*float64(len(us))/100-1e-9)) - 1
		out = append(out, us[min(max(i, 0), len(us)-1)]/1e3)
	}
	return out
}
