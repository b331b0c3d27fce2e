//go:build linux

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpgradeScript runs scripts/upgrade.sh as an operator would: a good
// new binary takes over and the old one exits; a bad config fails with
// the new binary's status and log while the old one keeps serving.
func TestUpgradeScript(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "upgrade.sock")
	up := startUpstream(t, nil)
	cfg := httpConfig("netpoll", []string{up.addr}, "", "")
	old := startProxy(t, cfg, "--upgrade-socket", sock)
	script := func(cfgPath string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "../../scripts/upgrade.sh", "-b", copyBinary(t, dir, 2), "-c", cfgPath,
			"-s", sock, "-l", filepath.Join(dir, "new.log"), "-t", "30").CombinedOutput()
		return string(out), err
	}

	out, err := script(writeTemp(t, cfg+"bogus_key: 1\n"))
	if err == nil || !strings.Contains(out, "FAILED: the new binary exited with status 1") || !strings.Contains(out, "bogus_key") {
		t.Fatalf("bad config: %v\n%s", err, out)
	}
	if code, _ := getStatus(t, "http://"+old.addr("http")+"/"); code == 0 {
		t.Fatal("the old process stopped serving")
	}

	// The same address string with port 0 adopts the old listener.
	out, err = script(writeTemp(t, cfg))
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^new pid (\d+)$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "exited") {
		t.Fatalf("script output:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGINT) })
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the old process is still running")
	}
	if code, _ := getStatus(t, "http://"+old.addr("http")+"/"); code == 0 {
		t.Fatal("nothing serves after the upgrade")
	}
	t.Log(out)
}
