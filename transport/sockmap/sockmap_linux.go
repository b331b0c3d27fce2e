// Package sockmap is the eBPF transport: the rawepoll reactor for the
// sockets, plus BPF programs (bpf/sockmap.c, loaded with cilium/ebpf) that
// keep bytes inside the kernel where the proxy's logic allows it.
//
//   - Same-host hops: a sockops program attached to a cgroup v2 records the
//     established loopback and same-host sockets of its processes in a
//     sockhash; its SK_MSG verdict hands a sent message straight to the peer
//     socket's receive queue. Nothing changes for the proxy's code: the
//     sockets still read and write; TCP/IP is skipped under them.
//   - L4 splice: a tcp_proxy pair (downstream, upstream) is joined with a
//     stream parser and verdict that redirect each side's bytes to the
//     other's egress, so payload never enters user space (transport.Splicer).
//
// Everything attached is pinned under /sys/fs/bpf/proxylab/<cgroup>-<pid>
// (<cgroup inode>-<pid>-<n>; inspectable with bpftool) and detached by Close; a later run detaches
// what a killed one left.
package sockmap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/proxylab/proxylab/foundation/stats"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/rawepoll"
)

// Transport is rawepoll with the BPF programs attached.
type Transport struct {
	inner  transport.Transport
	objs   sockmapObjects
	cg     link.Link
	raw    []link.RawDetachProgramOptions // program attachments to maps
	cgroup string
	pinDir string // "" when nothing is pinned
	splice bool
	log    *slog.Logger

	splices   atomic.Uint64
	mu        sync.Mutex
	fallbacks map[string]uint64
	closeOnce sync.Once

	// objsMu guards the maps' lifetime: map operations hold it for
	// reading (useMaps), Close for writing, so none races their close.
	objsMu     sync.RWMutex
	objsClosed bool
}

// useMaps takes the BPF maps for reading; false (and nothing to release)
// once the transport closed them.
func (t *Transport) useMaps() bool {
	t.objsMu.RLock()
	if t.objsClosed {
		t.objsMu.RUnlock()
		return false
	}
	return true
}

func (t *Transport) doneMaps() { t.objsMu.RUnlock() }

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.StatsReporter = (*Transport)(nil)
	_ transport.NearDialer    = (*Transport)(nil)
	_ stats.Collector         = (*Transport)(nil)
)

// New checks what the host allows, loads and attaches the programs and
// starts the reactor; any failure refuses the transport with its reason.
func New(opts transport.Options) (transport.Transport, error) {
	log := slog.Default()
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("sockmap: raising the locked-memory limit: %w", permissionHint(err))
	}
	if err := checkKernel(); err != nil {
		return nil, permissionHint(err)
	}
	o, _ := opts.Config.(*Options)
	if o == nil {
		o = &Options{}
		o.SetDefaults()
	}
	cg, err := resolveCgroup(o.Cgroup, log)
	if err != nil {
		return nil, err
	}
	t := &Transport{cgroup: cg, splice: o.splice(), log: log, fallbacks: map[string]uint64{}}
	if err := loadSockmapObjects(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("sockmap: loading the BPF programs: %w", permissionHint(err))
	}
	if err := t.attach(); err != nil {
		t.detach()
		return nil, err
	}
	inner, err := rawepoll.New(opts)
	if err != nil {
		t.detach()
		return nil, err
	}
	t.inner = inner
	log.Info("sockmap: attached", "cgroup", cg, "pinned", t.pinDir, "splice", t.splice)
	return t, nil
}

// attach wires the verdicts to their maps, sockops to the cgroup, and pins.
func (t *Transport) attach() error {
	for _, a := range []link.RawDetachProgramOptions{
		{Target: t.objs.LocalSocks.FD(), Program: t.objs.ProxylabMsg, Attach: ebpf.AttachSkMsgVerdict},
		{Target: t.objs.SpliceStreams.FD(), Program: t.objs.ProxylabParser, Attach: ebpf.AttachSkSKBStreamParser},
		{Target: t.objs.SpliceStreams.FD(), Program: t.objs.ProxylabVerdict, Attach: ebpf.AttachSkSKBStreamVerdict},
	} {
		if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: a.Target, Program: a.Program, Attach: a.Attach}); err != nil {
			return fmt.Errorf("sockmap: attaching %s: %w", a.Attach, permissionHint(err))
		}
		t.raw = append(t.raw, a)
	}
	root := bpffs(t.log)
	if root != "" {
		for _, dir := range replaceStale(root) {
			t.log.Warn("sockmap: detached what a previous run left attached", "pins", dir)
		}
		if pid := claimedBy(root, cgroupID(t.cgroup)); pid != 0 {
			return fmt.Errorf("sockmap: cgroup %s is already served by proxylab pid %d (one instance per cgroup: name another with --cgroup)", t.cgroup, pid)
		}
	}
	cg, err := link.AttachCgroup(link.CgroupOptions{Path: t.cgroup, Attach: ebpf.AttachCGroupSockOps, Program: t.objs.ProxylabSockops})
	if err != nil {
		return fmt.Errorf("sockmap: attaching sockops to cgroup %s: %w", t.cgroup, permissionHint(err))
	}
	t.cg = cg
	if root == "" {
		return nil
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%d-%d", cgroupID(t.cgroup), os.Getpid(), instances.Add(1)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.log.Warn("sockmap: not pinning", "err", err)
		return nil
	}
	t.pinDir = dir
	if err := t.cg.Pin(filepath.Join(dir, "sockops_link")); err != nil {
		return fmt.Errorf("sockmap: pinning: %w", err)
	}
	for name, m := range map[string]*ebpf.Map{"local_socks": t.objs.LocalSocks, "splice_streams": t.objs.SpliceStreams,
		"splice_targets": t.objs.SpliceTargets, "splice_peers": t.objs.SplicePeers, "counters": t.objs.Counters} {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("sockmap: pinning %s: %w", name, err)
		}
	}
	return nil
}

// detach undoes attach: the cgroup link first (no new sockets recorded),
// then the verdicts, then the pins and the objects.
func (t *Transport) detach() {
	if t.cg != nil {
		t.cg.Unpin()
		t.cg.Close()
	}
	for _, a := range t.raw {
		link.RawDetachProgram(a)
	}
	if t.pinDir != "" {
		unpinAll(t.pinDir)
		os.RemoveAll(t.pinDir)
	}
	t.objsMu.Lock()
	t.objsClosed = true
	t.objs.Close()
	t.objsMu.Unlock()
}

func (t *Transport) Name() string { return Name }

// Close stops the reactor and detaches everything.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		err = t.inner.Close()
		t.detach()
	})
	return err
}

// Listen binds with the reactor; accepted connections are wrapped.
func (t *Transport) Listen(network, address string) (transport.Listener, error) {
	l, err := t.inner.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return listener{Listener: l, t: t}, nil
}

type listener struct {
	transport.Listener
	t *Transport
}

func (l listener) Start(accept func(transport.Conn)) {
	l.Listener.Start(func(c transport.Conn) { accept(l.t.wrap(c)) })
}

// Dial connects with the reactor; the connection is wrapped.
func (t *Transport) Dial(network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	t.inner.Dial(network, address, timeout, func(c transport.Conn, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		done(t.wrap(c), nil)
	})
}

// DialNear connects on near's loop (transport.NearDialer), so a splice of
// the pair runs where neither socket can be read concurrently.
func (t *Transport) DialNear(near transport.Conn, network, address string, timeout time.Duration, done func(transport.Conn, error)) {
	nd, ok := t.inner.(transport.NearDialer)
	if w, isOurs := near.(*conn); ok && isOurs {
		nd.DialNear(w.Conn, network, address, timeout, func(c transport.Conn, err error) {
			if err != nil {
				done(nil, err)
				return
			}
			done(t.wrap(c), nil)
		})
		return
	}
	t.Dial(network, address, timeout, done)
}

// fallback counts a pair left in user space and returns why.
func (t *Transport) fallback(reason string, err error) error {
	t.mu.Lock()
	t.fallbacks[reason]++
	t.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sockmap: splice: %s: %w", reason, err)
	}
	return fmt.Errorf("sockmap: splice: %s", reason)
}

// Counter slots of bpf/sockmap.c.
const (
	cLocalInserted = iota
	cLocalInsertFailed
	cMsgRedirected
	cMsgRedirectedBytes
	cMsgPassed
	cSkbRedirected
	cSkbRedirectedBytes
	cSkbPassed
	cMax
)

// counter sums a per-CPU counter.
func (t *Transport) counter(slot uint32) uint64 {
	var per []uint64
	if !t.useMaps() {
		return 0
	}
	err := t.objs.Counters.Lookup(slot, &per)
	t.doneMaps()
	if err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// Stats are the reactor's counters; the programs' are exported by Collect.
func (t *Transport) Stats() transport.Stats {
	if r, ok := t.inner.(transport.StatsReporter); ok {
		return r.Stats()
	}
	return transport.Stats{}
}

// Collect exports the BPF programs' counters and the splices (metric
// names are part of the admin API: proxylab_sockmap_*).
func (t *Transport) Collect(emit stats.Emit) {
	tr := stats.Label{Name: "transport", Value: Name}
	for _, m := range []struct {
		name, help string
		v          uint64
	}{
		{"sockmap_local_sockets_total", "Same-host sockets recorded by the sockops program.", t.counter(cLocalInserted)},
		{"sockmap_msg_redirects_total", "Messages handed to the peer socket by SK_MSG (TCP/IP skipped).", t.counter(cMsgRedirected)},
		{"sockmap_msg_redirect_bytes_total", "Bytes handed to the peer socket by SK_MSG.", t.counter(cMsgRedirectedBytes)},
		{"sockmap_msg_passed_total", "Messages sent normally: no peer socket in the map (remote, or outside the cgroup).", t.counter(cMsgPassed)},
		{"sockmap_splices_total", "tcp_proxy pairs joined in the kernel.", t.splices.Load()},
		{"sockmap_spliced_bytes_total", "Bytes forwarded between spliced sockets in the kernel.", t.counter(cSkbRedirectedBytes)},
	} {
		emit(m.name, m.help, stats.CounterKind, float64(m.v), tr)
	}
	t.mu.Lock()
	fallbacks := make(map[string]uint64, len(t.fallbacks))
	for k, v := range t.fallbacks {
		fallbacks[k] = v
	}
	t.mu.Unlock()
	for reason, v := range fallbacks {
		emit("sockmap_splice_fallbacks_total", "tcp_proxy pairs left in user space, by reason.", stats.CounterKind, float64(v), tr, stats.Label{Name: "reason", Value: reason})
	}
}

// Cgroup is the cgroup v2 directory sockops is attached to.
func (t *Transport) Cgroup() string { return t.cgroup }

// PinDir is where the attached objects are pinned ("" when not pinned).
func (t *Transport) PinDir() string { return t.pinDir }

var errNotSockmap = errors.New("the peer is not a sockmap connection")

// instances numbers the transports of this process (pin directories).
var instances atomic.Uint64

// Module is the sockmap transport as cmd registers it.
var Module = transport.Module{Name: Name, New: New, Options: DecodeOptions}
