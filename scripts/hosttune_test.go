// Package scripts holds tests of the shell helpers beside them.
package scripts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHost builds a /sys and /proc tree with 4 CPUs, 3 IRQs and huge pages.
func fakeHost(t *testing.T) (root string, files map[string]string) {
	root = t.TempDir()
	files = map[string]string{
		"sys/devices/system/cpu/online":                        "0-3",
		"sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
		"sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "powersave",
		"sys/devices/system/cpu/cpu2/cpufreq/scaling_governor": "schedutil",
		"sys/devices/system/cpu/cpu3/cpufreq/scaling_governor": "performance",
		"proc/irq/1/smp_affinity_list":                         "0-3",
		"proc/irq/24/smp_affinity_list":                        "2",
		"proc/irq/130/smp_affinity_list":                       "0,1",
		"proc/sys/vm/nr_hugepages":                             "0",
	}
	for name, v := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, files
}

func tune(t *testing.T, root string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"host-tune.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "SYSROOT="+root, "STATE="+filepath.Join(root, "state"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func read(t *testing.T, root, name string) string {
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestHostTuneApplyAndUndo(t *testing.T) {
	root, files := fakeHost(t)
	out, err := tune(t, root, "apply", "--proxy-cpus", "2-3", "--hugepages", "256")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name, want := range map[string]string{
		"sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
		"sys/devices/system/cpu/cpu2/cpufreq/scaling_governor": "performance",
		"proc/irq/1/smp_affinity_list":                         "0,1",
		"proc/irq/24/smp_affinity_list":                        "0,1",
		"proc/irq/130/smp_affinity_list":                       "0,1",
		"proc/sys/vm/nr_hugepages":                             "256",
	} {
		if got := read(t, root, name); got != want {
			t.Errorf("after apply %s = %q, want %q", name, got, want)
		}
	}
	// Every change is printed with what it replaced; unchanged values say so.
	for _, want := range []string{"cpu1/cpufreq/scaling_governor: powersave -> performance", "irq/24/smp_affinity_list: 2 -> 0,1", "cpu3/cpufreq/scaling_governor: already performance", "nr_hugepages: 0 -> 256"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if out, err := tune(t, root, "apply", "--proxy-cpus", "2-3"); err == nil || !strings.Contains(out, "not undone") {
		t.Fatalf("a second apply must refuse to overwrite the saved state: %v\n%s", err, out)
	}
	if out, err := tune(t, root, "status"); err != nil || !strings.Contains(out, "applied: ") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := tune(t, root, "undo"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name, want := range files {
		if got := read(t, root, name); got != want {
			t.Errorf("after undo %s = %q, want %q", name, got, want)
		}
	}
	if out, err := tune(t, root, "undo"); err == nil || !strings.Contains(out, "nothing to undo") {
		t.Fatalf("undo twice: %v\n%s", err, out)
	}
}

func TestHostTuneRefusesBadInput(t *testing.T) {
	root, _ := fakeHost(t)
	for _, args := range [][]string{
		{"apply"},                            // no proxy CPUs
		{"apply", "--proxy-cpus", "0-3"},     // leaves no CPU for IRQs
		{"apply", "--proxy-cpus", "3-1"},     // bad range
		{"apply", "--proxy-cpus", "x"},       // not a list
		{"apply", "--proxy-cpus", "1", "-q"}, // unknown option
	} {
		out, err := tune(t, root, args...)
		if err == nil || !strings.Contains(out, "host-tune:") {
			t.Errorf("%v accepted: %s", args, out)
		}
		if got := read(t, root, "proc/irq/24/smp_affinity_list"); got != "2" {
			t.Fatalf("%v changed the host before refusing: irq 24 on %q", args, got)
		}
		os.Remove(filepath.Join(root, "state"))
	}
}
