package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
)

// hostPools are a host's upstream pools: one per event loop of the
// downstream connections' transport (as Envoy's workers keep worker-local
// pools), so a request and its response stay on the downstream
// connection's loop and no loop takes another's pool lock; sessions whose
// transport has no loops (netpoll, TLS-wrapped conns) share one pool.
// Per-loop pools are off (perLoop false) when the host or the cluster
// bounds connections or pending requests: such a limit is one queue for
// the whole host, and split pools would starve one loop while another
// holds every connection.
//
// The pools share one set of counters. Pools are created on first use and
// live as long as the host.
type hostPools struct {
	shared  stream.HostPool
	mk      func() stream.HostPool
	perLoop bool

	loops    atomic.Pointer[[]stream.HostPool] // indexed by loop; grown under mu
	mu       sync.Mutex
	draining bool // under mu
}

var _ HTTPPool = (*hostPools)(nil)

// limitedPool is a pool that says whether it bounds the host's
// connections or pending requests.
type limitedPool interface{ Limited() bool }

// sharedStats is a pool whose counters can be shared with its siblings.
type sharedStats interface{ UseStats(*stream.PoolStats) }

// newHostPools makes the host's pools with mk; perLoop false (or a pool
// that reports host limits) keeps one shared pool.
func newHostPools(mk func() stream.HostPool, perLoop bool) *hostPools {
	shared := mk()
	if l, ok := shared.(limitedPool); ok && l.Limited() {
		perLoop = false
	}
	if _, ok := shared.(sharedStats); !ok {
		perLoop = false
	}
	return &hostPools{shared: shared, mk: mk, perLoop: perLoop}
}

// loopOf is the event loop of the downstream connection behind s, or -1.
func loopOf(s stream.Session) int {
	t, ok := s.(interface{ Transport() transport.Conn })
	if !ok {
		return -1
	}
	if l, ok := t.Transport().(transport.Looper); ok {
		return l.Loop()
	}
	return -1
}

// of is the pool serving s's loop.
func (hp *hostPools) of(s stream.Session) stream.HostPool {
	if !hp.perLoop {
		return hp.shared
	}
	i := loopOf(s)
	if i < 0 {
		return hp.shared
	}
	if ls := hp.loops.Load(); ls != nil && i < len(*ls) && (*ls)[i] != nil {
		return (*ls)[i]
	}
	return hp.create(i)
}

// create makes loop i's pool (slow path, once per loop).
func (hp *hostPools) create(i int) stream.HostPool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	var ls []stream.HostPool
	if cur := hp.loops.Load(); cur != nil {
		ls = *cur
	}
	if i < len(ls) && ls[i] != nil {
		return ls[i]
	}
	next := make([]stream.HostPool, max(len(ls), i+1))
	copy(next, ls)
	p := hp.mk()
	p.(sharedStats).UseStats(hp.shared.Counters())
	if hp.draining {
		p.Drain()
	}
	next[i] = p
	hp.loops.Store(&next)
	return p
}

// each runs f on every pool.
func (hp *hostPools) each(f func(stream.HostPool)) {
	f(hp.shared)
	if ls := hp.loops.Load(); ls != nil {
		for _, p := range *ls {
			if p != nil {
				f(p)
			}
		}
	}
}

// NewStream implements stream.Pool on the pool of the caller's loop.
func (hp *hostPools) NewStream(dec stream.ResponseDecoder, s stream.Session, cb stream.PoolCallbacks) stream.Cancellable {
	return hp.of(s).NewStream(dec, s, cb)
}

// Drain drains every pool, and those made later.
func (hp *hostPools) Drain() {
	hp.mu.Lock()
	hp.draining = true
	hp.mu.Unlock()
	hp.each(stream.HostPool.Drain)
}

func (hp *hostPools) Protocol() string            { return hp.shared.Protocol() }
func (hp *hostPools) Counters() *stream.PoolStats { return hp.shared.Counters() }

func (hp *hostPools) Idle() (n int) {
	hp.each(func(p stream.HostPool) { n += p.Idle() })
	return n
}

func (hp *hostPools) SweepIdle(now time.Time) (n int) {
	hp.each(func(p stream.HostPool) { n += p.SweepIdle(now) })
	return n
}
