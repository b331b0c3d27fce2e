package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/stream/pool"
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
	shared  *pool.Pool
	mk      func() *pool.Pool
	perLoop bool

	loops    atomic.Pointer[[]*pool.Pool] // indexed by loop; grown under mu
	mu       sync.Mutex
	draining bool // under mu
}

var _ HTTPPool = (*hostPools)(nil)

func newHostPools(mk func() *pool.Pool, perLoop bool) *hostPools {
	return &hostPools{shared: mk(), mk: mk, perLoop: perLoop}
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
func (hp *hostPools) of(s stream.Session) *pool.Pool {
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
func (hp *hostPools) create(i int) *pool.Pool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	var ls []*pool.Pool
	if cur := hp.loops.Load(); cur != nil {
		ls = *cur
	}
	if i < len(ls) && ls[i] != nil {
		return ls[i]
	}
	next := make([]*pool.Pool, max(len(ls), i+1))
	copy(next, ls)
	p := hp.mk()
	p.UseStats(hp.shared.Counters())
	if hp.draining {
		p.Drain()
	}
	next[i] = p
	hp.loops.Store(&next)
	return p
}

// each runs f on every pool.
func (hp *hostPools) each(f func(*pool.Pool)) {
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
	hp.each((*pool.Pool).Drain)
}

func (hp *hostPools) Protocol() string            { return hp.shared.Protocol() }
func (hp *hostPools) Counters() *stream.PoolStats { return hp.shared.Counters() }

func (hp *hostPools) Idle() (n int) {
	hp.each(func(p *pool.Pool) { n += p.Idle() })
	return n
}

func (hp *hostPools) SweepIdle(now time.Time) (n int) {
	hp.each(func(p *pool.Pool) { n += p.SweepIdle(now) })
	return n
}
