package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestConcurrentMatricesDoNotCollide runs two small matrices at once: with
// ports picked at run time both measure their systems (fixed ports made
// the second one's upstream and proxies fail to bind), and neither leaves a
// process behind.
func TestConcurrentMatricesDoNotCollide(t *testing.T) {
	for _, tool := range []string{"wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make test installs it)", tool)
		}
	}
	becomeSubreaper(t)
	dir := t.TempDir()
	bin, pb := filepath.Join(dir, "proxylab"), filepath.Join(dir, "proxybench")
	for target, src := range map[string]string{bin: "../../cmd/proxylab", pb: "../../cmd/proxybench"} {
		if out, err := exec.Command("go", "build", "-o", target, src).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	cells := make([][]Cell, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := ParseScenario([]byte("name: tiny\nsystems: [proxylab-netpoll]\nprotocols: [http1]\nrounds: 1\nduration: 1s\nwarmup: 200ms\nupstream: proxybench\nbaseline: proxylab-netpoll\nprofile: true\n"))
			if err != nil {
				errs[i] = err
				return
			}
			work := filepath.Join(dir, "run"+string(rune('a'+i)))
			if err := os.MkdirAll(work, 0o755); err != nil {
				errs[i] = err
				return
			}
			cells[i], _, _, errs[i] = Run(ctx, s, Tools{Proxylab: bin, Proxybench: pb}, work, nil)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil || len(cells[i]) != 1 || cells[i][0].Errors != 0 || cells[i][0].RPS <= 0 {
			t.Errorf("run %d: %v, cells %+v", i, errs[i], cells[i])
		}
	}
	noLeftovers(t, dir)
}
