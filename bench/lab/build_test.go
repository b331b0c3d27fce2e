package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBuildRef builds ./cmd/proxylab of an older commit of a real git
// repository while its checkout holds newer, uncommitted work: the binary is
// the old one and the checkout is untouched.
func TestBuildRef(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(repo, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := func(word string) string {
		return "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + word + "\") }\n"
	}
	run("git", "init", "-q")
	write("go.mod", "module example.com/lab\n\ngo 1.21\n")
	write("cmd/proxylab/main.go", main("old"))
	run("git", "add", ".")
	run("git", "commit", "-qm", "old")
	old := run("git", "rev-parse", "HEAD")
	write("cmd/proxylab/main.go", main("new"))
	run("git", "commit", "-qam", "new")
	write("cmd/proxylab/main.go", main("dirty")) // uncommitted work
	status := run("git", "status", "--porcelain")
	worktrees := run("git", "worktree", "list")

	bin, err := BuildRef(repo, old[:7], t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin).Output(); err != nil || strings.TrimSpace(string(out)) != "old" {
		t.Fatalf("built binary says %q (%v), want old", out, err)
	}
	if got := run("git", "status", "--porcelain"); got != status {
		t.Fatalf("checkout changed: %q, was %q", got, status)
	}
	if got := run("git", "worktree", "list"); got != worktrees {
		t.Fatalf("worktrees changed: %q, was %q", got, worktrees)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "cmd/proxylab/main.go")); string(b) != main("dirty") {
		t.Fatal("the uncommitted file changed")
	}
	if _, err := BuildRef(repo, "no-such-ref", t.TempDir()); err == nil {
		t.Fatal("an unknown ref built")
	}
}

func TestAddBuildOrder(t *testing.T) {
	for _, tc := range []struct {
		first bool
		want  []string
	}{
		{false, []string{"proxylab-netpoll", "proxylab-netpoll@v1", "proxylab-rawepoll", "proxylab-rawepoll@v1", "haproxy", "nginx"}},
		{true, []string{"proxylab-netpoll@v1", "proxylab-netpoll", "proxylab-rawepoll@v1", "proxylab-rawepoll", "haproxy", "nginx"}},
	} {
		s := &Scenario{Systems: []string{"proxylab-netpoll", "proxylab-rawepoll", "haproxy", "nginx"}}
		s.AddBuild("v1", tc.first)
		if !slices.Equal(s.Systems, tc.want) {
			t.Errorf("first=%v: %v, want %v", tc.first, s.Systems, tc.want)
		}
	}
}

// TestCompareBuilds: current over other, paired by round, per cell.
func TestCompareBuilds(t *testing.T) {
	var cells []Cell
	for r, v := range [][2]float64{{10, 8}, {12, 12}, {9, 10}} {
		cells = append(cells,
			Cell{Round: r + 1, System: "proxylab-rawepoll", Protocol: "http1", Connections: 50, CPUusPerReq: v[0]},
			Cell{Round: r + 1, System: "proxylab-rawepoll@v1", Protocol: "http1", Connections: 50, CPUusPerReq: v[1]},
			Cell{Round: r + 1, System: "haproxy", Protocol: "http1", Connections: 50, CPUusPerReq: 5})
	}
	rows := CompareBuilds(cells)
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	r := rows[0]
	if r.System != "proxylab-rawepoll" || r.Build != "v1" || r.Ratio.N != 3 || r.Ratio.Median != 1 || r.Ratio.Max != 1.25 || r.Ratio.Min != 0.9 {
		t.Fatalf("row %+v", r)
	}
	var b strings.Builder
	writeAB(&b, cells)
	if !strings.Contains(b.String(), "| proxylab-rawepoll | v1 | http1 | 50 | 0 | 0 | 1.000 (0.900–1.250) |") {
		t.Fatalf("report section:\n%s", b.String())
	}
}

func TestStartSystemUnknownBuild(t *testing.T) {
	s := &Scenario{}
	_, err := startSystem("proxylab-netpoll@v9", phase{proto: "http1", label: "http1"}, &runAddrs{}, &ports{}, s, Tools{}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `no proxylab build "v9"`) {
		t.Fatalf("err %v", err)
	}
}
