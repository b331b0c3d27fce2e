package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/sockmap"
)

var platformTransports = []string{"rawepoll"}

// probedTransports adds sockmap when this host can run it (root, BPF,
// cgroup v2): CI runs as root, so the whole suite runs over it there.
func probedTransports() []string {
	mount := cgroup2Mount()
	if os.Geteuid() != 0 || mount == "" {
		fmt.Fprintln(os.Stderr, "integration: sockmap not run (needs root and cgroup v2)")
		return nil
	}
	dir := filepath.Join(mount, fmt.Sprintf("proxylab-probe-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "integration: sockmap not run:", err)
		return nil
	}
	defer os.Remove(dir)
	tr, err := sockmap.New(transport.Options{Workers: 1, Config: &sockmap.Options{Cgroup: dir}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: sockmap not run:", err)
		return nil
	}
	tr.Close()
	return []string{"sockmap"}
}

// cgroup2Mount is the cgroup v2 mount point ("" when none).
func cgroup2Mount() string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, " - cgroup2 "); i > 0 {
			if f := strings.Fields(line[:i]); len(f) > 4 {
				return f[4]
			}
		}
	}
	return ""
}

// transportArgs gives a sockmap proxy a cgroup of its own (created by the
// proxy, which joins it, and removed when it has exited), so concurrent
// proxies never share one and the test's own sockets stay outside unless a
// test joins.
func transportArgs(t *testing.T, config string, args []string) []string {
	if !strings.Contains(config, "transport: sockmap") && !slices.Contains(args, "sockmap") {
		return nil
	}
	if slices.Contains(args, "--cgroup") || strings.Contains(config, "cgroup:") {
		return nil
	}
	dir := filepath.Join(cgroup2Mount(), fmt.Sprintf("proxylab-it-%d-%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() {
		// After the proxy's own cleanup (registered later, run earlier).
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return []string{"--cgroup", dir}
}
