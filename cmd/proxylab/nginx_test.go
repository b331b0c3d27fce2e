package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startNginx runs a real nginx upstream serving root on a random port.
func startNginx(t *testing.T, root string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not installed (make test installs it)")
	}
	addr := closedPort(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	conf := filepath.Join(dir, "nginx.conf")
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must read the test's private temp dir
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(`%s
worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s;
  server {
    listen %s;
    root %s;
    location = /echo-length { client_max_body_size 100m; return 200 "len=$content_length\n"; }
  }
}
`, user, dir, dir, dir, addr, root)), 0o644)
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // master and workers, stopped together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopGroup(t, cmd, syscall.SIGQUIT) })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("nginx did not start")
	return ""
}

func TestNginxUpstream(t *testing.T) {
	root := t.TempDir()
	big := bytes.Repeat([]byte("nginx-served-bytes/"), 300_000) // ~5.7 MB
	os.WriteFile(filepath.Join(root, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(root, "index.html"), []byte("hello from nginx\n"), 0o644)
	up := startNginx(t, root)
	forEachTransport(t, func(t *testing.T, tr string) {
		p := startProxy(t, httpConfig(tr, []string{up}, "", ""))
		base := "http://" + p.addr("http")
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		for i := 0; i < 3; i++ { // keep-alive on both sides
			resp, err := client.Get(base + "/big.bin")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(got, big) {
				t.Fatalf("big.bin: %d, %d of %d bytes", resp.StatusCode, len(got), len(big))
			}
		}
		resp, err := client.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from nginx\n" || resp.Header.Get("Server") == "" {
			t.Fatalf("index: %q server=%q", body, resp.Header.Get("Server"))
		}
		resp, err = client.Post(base+"/echo-length", "text/plain", bytes.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != fmt.Sprintf("len=%d\n", len(big)) {
			t.Fatalf("upload to nginx: %q", body)
		}
		resp, err = client.Get(base + "/missing")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("nginx 404 not passed through: %d", resp.StatusCode)
		}
	})
}
