package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/proxylab/proxylab/bench/summary"
)

// A system named proxylab-<transport>@<label> runs another build of
// proxylab (Tools.Builds[label], e.g. a git ref built by BuildRef) beside
// the current one in the same matrix: same configs, CPUs and interleaved
// rounds, so two builds compare without the drift between two runs.

// splitBuild splits a system name into the system and its build label
// ("" for the current build).
func splitBuild(name string) (system, label string) {
	system, label, _ = strings.Cut(name, "@")
	return system, label
}

// BuildRef builds the proxylab command (./cmd/proxylab) of ref in the git
// repository at repo into dir and returns the binary's path. The source is
// exported with git archive into dir, so the repository's checkout, index
// and worktree list are left as they are.
func BuildRef(repo, ref, dir string) (string, error) {
	sha, err := git(repo, "rev-parse", "--verify", ref+"^{commit}")
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "src-"+sha[:12])
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	archive := exec.Command("git", "-C", repo, "archive", sha)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	untar.Stdin = pipe
	var aerr, terr bytes.Buffer
	archive.Stderr, untar.Stderr = &aerr, &terr
	if err := untar.Start(); err != nil {
		return "", fmt.Errorf("lab: tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("lab: git archive %s: %w: %s", ref, err, aerr.Bytes())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("lab: tar: %w: %s", err, terr.Bytes())
	}
	bin := filepath.Join(dir, "proxylab-"+sha[:12])
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/proxylab")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lab: building %s: %w: %s", ref, err, out)
	}
	return bin, nil
}

func git(repo string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("lab: git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr))
	}
	return strings.TrimSpace(string(out)), nil
}

// AddBuild adds, for every proxylab system of the current build, the same
// system of build label; it runs right after its counterpart in each round
// (right before with first), so two orders can be compared.
func (s *Scenario) AddBuild(label string, first bool) {
	var out []string
	for _, name := range s.Systems {
		sys, l := splitBuild(name)
		if l != "" || !strings.HasPrefix(sys, "proxylab") {
			out = append(out, name)
			continue
		}
		other := sys + "@" + label
		if first {
			out = append(out, other, name)
		} else {
			out = append(out, name, other)
		}
	}
	s.Systems = out
}

// ABRow compares a proxylab system of the current build with the same
// system of another build in one cell: CPU per request, current over
// other, paired by round.
type ABRow struct {
	System, Build, Protocol          string
	Connections, ResponseBytes, Reqs int
	Ratio                            summary.Summary
}

// CompareBuilds pairs each current-build proxylab row with its other
// builds' rows.
func CompareBuilds(cells []Cell) []ABRow {
	type key struct {
		sys, proto       string
		conns, size, req int
	}
	byRound := map[key]map[int]float64{}
	var order []key
	for _, c := range cells {
		k := key{c.System, c.Protocol, c.Connections, c.ResponseBytes, c.RequestBytes}
		if byRound[k] == nil {
			byRound[k] = map[int]float64{}
			order = append(order, k)
		}
		byRound[k][c.Round] = c.CPUusPerReq
	}
	var rows []ABRow
	for _, k := range order {
		sys, label := splitBuild(k.sys)
		if label == "" {
			continue
		}
		cur := byRound[key{sys, k.proto, k.conns, k.size, k.req}]
		if cur == nil {
			continue
		}
		r, err := summary.Of(summary.PairedRatios(cur, byRound[k]))
		if err != nil {
			continue
		}
		rows = append(rows, ABRow{System: sys, Build: label, Protocol: k.proto, Connections: k.conns, ResponseBytes: k.size, Reqs: k.req, Ratio: r})
	}
	slices.SortStableFunc(rows, func(a, b ABRow) int { return strings.Compare(a.Protocol, b.Protocol) })
	return rows
}

// writeAB adds the build comparison to a report, when the run has one.
func writeAB(b *strings.Builder, cells []Cell) {
	rows := CompareBuilds(cells)
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n### Builds compared in the same run\n\nProxy CPU per request of the current build over the other build's, paired by round (below 1: the current build is cheaper).\n\n| system | other build | protocol | conns | response B | request B | CPU current / other: median (min–max) |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %d | %.3f (%.3f–%.3f) |\n", r.System, r.Build, r.Protocol, r.Connections, r.ResponseBytes, r.Reqs, r.Ratio.Median, r.Ratio.Min, r.Ratio.Max)
	}
}
