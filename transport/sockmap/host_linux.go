package sockmap

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// What the host must allow, checked before anything is attached so the flag
// is refused with the reason.

// checkKernel says which program or map type the kernel lacks.
func checkKernel() error {
	for _, pt := range []ebpf.ProgramType{ebpf.SockOps, ebpf.SkMsg, ebpf.SkSKB} {
		if err := features.HaveProgramType(pt); err != nil {
			return fmt.Errorf("sockmap: the kernel cannot load %s programs: %w", pt, err)
		}
	}
	if err := features.HaveMapType(ebpf.SockHash); err != nil {
		return fmt.Errorf("sockmap: the kernel has no sockhash maps: %w", err)
	}
	return nil
}

// permissionHint turns EPERM into what to do about it.
func permissionHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN for the cgroup attach)", err)
	}
	return err
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted; with none
// mounted, one is mounted under /run/proxylab.
func cgroup2Mount(log *slog.Logger) (string, error) {
	if m := findMount("cgroup2"); m != "" {
		return m, nil
	}
	dir := "/run/proxylab/cgroup2"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("sockmap: no cgroup v2 mounted, and %s cannot be made: %w", dir, err)
	}
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("sockmap: no cgroup v2 mounted, and mounting one on %s failed: %w", dir, permissionHint(err))
	}
	log.Info("sockmap: mounted cgroup v2", "at", dir)
	return dir, nil
}

// findMount is the first mount point of a filesystem type.
func findMount(fstype string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source super
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == fstype && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// ownCgroup is the process's cgroup v2 directory under mount.
func ownCgroup(mount string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("sockmap: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mount, rest), nil
		}
	}
	return "", errors.New("sockmap: /proc/self/cgroup has no cgroup v2 entry")
}

// resolveCgroup is the directory to attach to: the configured one (created
// and joined when missing) or the process's own.
func resolveCgroup(path string, log *slog.Logger) (string, error) {
	mount, err := cgroup2Mount(log)
	if err != nil {
		return "", err
	}
	if path == "" {
		return ownCgroup(mount)
	}
	path = filepath.Clean(path)
	if rel, err := filepath.Rel(mount, path); err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("sockmap: cgroup %s is not under the cgroup v2 mount %s", path, mount)
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sockmap: cgroup %s: %w", path, err)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", fmt.Errorf("sockmap: creating cgroup %s: %w", path, permissionHint(err))
	}
	// A new cgroup holds nothing: the proxy joins it, so its own sockets
	// (half of every hop) are covered; the applications join it too.
	if err := os.WriteFile(filepath.Join(path, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return "", fmt.Errorf("sockmap: joining cgroup %s: %w", path, permissionHint(err))
	}
	log.Info("sockmap: created the cgroup and joined it", "cgroup", path)
	return path, nil
}

// pinRoot is where instances pin what they attach, one directory each
// (<cgroup inode>-<pid>-<n>), so a later run finds what a killed one left.
const pinRoot = "/sys/fs/bpf/proxylab"

// bpffs makes sure a BPF filesystem is mounted at /sys/fs/bpf; "" (no
// pinning) when it cannot be.
func bpffs(log *slog.Logger) string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC {
		return pinRoot
	}
	if err := os.MkdirAll("/sys/fs/bpf", 0o755); err == nil {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err == nil {
			return pinRoot
		} else {
			log.Warn("sockmap: no BPF filesystem: objects are not pinned", "err", err)
		}
	}
	return ""
}

// replaceStale detaches and unpins what instances that are gone left
// behind (a SIGKILL skips Close), returning the directories it cleared.
func replaceStale(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var cleared []string
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 2 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || alive(pid) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		unpinAll(dir)
		os.RemoveAll(dir)
		cleared = append(cleared, dir)
	}
	return cleared
}

// claimedBy is the pid of a live instance whose pins say it is attached to
// the cgroup with this id (0: none). Two instances on one cgroup would fight
// over the same sockets (a socket takes one SK_MSG program).
func claimedBy(root, id string) int {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 3 || parts[0] != id {
			continue
		}
		if pid, err := strconv.Atoi(parts[1]); err == nil && (pid == os.Getpid() || alive(pid)) {
			return pid
		}
	}
	return 0
}

func alive(pid int) bool {
	return pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH
}

// unpinAll detaches pinned links (closing the last reference detaches the
// program) and unpins pinned maps (freed with their program attachments).
func unpinAll(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			l.Unpin()
			l.Close()
			continue
		}
		if m, err := ebpf.LoadPinnedMap(p, nil); err == nil {
			m.Unpin()
			m.Close()
			continue
		}
		os.Remove(p)
	}
}

// cgroupID names a cgroup directory in pin paths.
func cgroupID(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return "0"
	}
	return strconv.FormatUint(st.Ino, 10)
}
