package lab

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes the test process the parent of every orphan its
// children leave (PR_SET_CHILD_SUBREAPER), so noLeftovers sees them: an
// nginx worker whose master was killed would otherwise go to init.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
}

// noLeftovers fails the test if a process the test started (or an orphan of
// one) is still a child of the test, or one runs with dir on its command
// line. Orphans found are killed, so they do not outlive the test.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	var left string
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		children, _ := exec.Command("pgrep", "-a", "-P", self).Output()
		inDir, _ := exec.Command("pgrep", "-a", "-f", dir).Output()
		// pgrep itself is a child while it runs; reap zombies it finds too.
		left = strings.TrimSpace(filterPgrep(string(children)) + "\n" + string(inDir))
		if left == "" {
			return
		}
		for {
			var ws unix.WaitStatus
			if pid, _ := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		if time.Now().After(end) {
			break
		}
	}
	for _, line := range strings.Split(left, "\n") {
		if pid, err := strconv.Atoi(strings.Fields(line + " x")[0]); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	t.Errorf("processes left behind by the test:\n%s", left)
}

// filterPgrep drops pgrep's own lines from its output.
func filterPgrep(out string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.Contains(l, "pgrep") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
