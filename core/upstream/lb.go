package upstream

import (
	"encoding/binary"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// NewWeightedRoundRobin is smooth weighted round robin (nginx's algorithm):
// over every cycle of sum(weights) picks each host is chosen exactly its
// weight times, interleaved rather than in runs. With equal weights it is
// plain round robin without a lock.
func NewWeightedRoundRobin(hosts []*Host) LoadBalancer {
	equal := true
	for _, h := range hosts {
		if h.Weight != hosts[0].Weight {
			equal = false
		}
	}
	if equal {
		return NewRoundRobin(hosts)
	}
	w := &smoothWRR{hosts: hosts, current: make([]int64, len(hosts))}
	for _, h := range hosts {
		w.total += int64(h.Weight)
	}
	return w
}

type smoothWRR struct {
	mu      sync.Mutex
	hosts   []*Host
	current []int64
	total   int64
}

func (w *smoothWRR) Choose(*LBContext) *Host {
	if len(w.hosts) == 0 {
		return nil
	}
	w.mu.Lock()
	best := 0
	for i, h := range w.hosts {
		w.current[i] += int64(h.Weight)
		if w.current[i] > w.current[best] {
			best = i
		}
	}
	w.current[best] -= w.total
	w.mu.Unlock()
	return w.hosts[best]
}

// NewLeastRequest is power-of-two-choices: of two random hosts, the one with
// fewer requests in flight per unit of weight.
func NewLeastRequest(hosts []*Host) LoadBalancer { return newLeastRequest(hosts, 2) }

// newLeastRequest compares choices random hosts per pick (2: two distinct
// ones; more: drawn with replacement, as Envoy does).
func newLeastRequest(hosts []*Host, choices int) LoadBalancer {
	return &leastRequest{hosts: hosts, choices: choices}
}

type leastRequest struct {
	hosts   []*Host
	choices int
}

func (l *leastRequest) Describe() string { return "choice_count=" + strconv.Itoa(l.choices) }

// less reports whether a has no more requests in flight per unit of weight
// than b (compared without dividing).
func less(a, b *Host) bool {
	return a.ActiveRequests.Load()*int64(b.Weight) <= b.ActiveRequests.Load()*int64(a.Weight)
}

func (l *leastRequest) Choose(*LBContext) *Host {
	n := len(l.hosts)
	switch n {
	case 0:
		return nil
	case 1:
		return l.hosts[0]
	}
	a := l.hosts[rand.IntN(n)]
	if l.choices > 2 {
		for i := 1; i < l.choices; i++ {
			if b := l.hosts[rand.IntN(n)]; !less(a, b) {
				a = b
			}
		}
		return a
	}
	b := l.hosts[rand.IntN(n-1)]
	if b == a {
		b = l.hosts[n-1]
	}
	if less(a, b) {
		return a
	}
	return b
}

// HashKey hashes a request key (header value, cookie, client IP) for the
// consistent policies.
func HashKey(b []byte) uint64 { return xxhash.Sum64(b) }

// ringPointsPerWeight is the virtual nodes a host gets per unit of weight.
// It must not depend on the other hosts: then a host leaving removes only its
// own points and no other key moves.
const ringPointsPerWeight = 160

// NewRingHash is consistent hashing on a ring of virtual nodes, as many per
// host as its weight says. A host leaving moves only its own keys.
// Requests without a hash (no hash policy matched) get a random host.
func NewRingHash(hosts []*Host) LoadBalancer {
	return newRingHash(hosts, RingHashOptions{MaximumRingSize: MaxRingSize, HashFunction: "xx_hash"})
}

// newRingHash builds the ring with ringPointsPerWeight points per unit of
// weight, scaled to fit [o.MinimumRingSize, o.MaximumRingSize].
func newRingHash(hosts []*Host, o RingHashOptions) LoadBalancer {
	r := &ringHash{hosts: hosts}
	hash := xxhash.Sum64
	if o.HashFunction == "murmur_hash_2" {
		hash = murmur2
	}
	var total float64
	for _, h := range hosts {
		total += float64(h.Weight) * ringPointsPerWeight
	}
	scale := 1.0
	if total > 0 {
		if m := float64(o.MinimumRingSize); total < m {
			scale = m / total
		}
		if m := float64(o.MaximumRingSize); o.MaximumRingSize > 0 && total > m {
			scale = m / total
		}
	}
	for _, h := range hosts {
		n := int(h.Weight) * ringPointsPerWeight
		if scale != 1 {
			n = max(1, int(float64(n)*scale+0.5))
		}
		buf := make([]byte, 0, len(h.Address)+8)
		for i := 0; i < n; i++ {
			buf = strconv.AppendInt(append(append(buf[:0], h.Address...), '_'), int64(i), 10)
			r.points = append(r.points, ringPoint{hash: hash(buf), host: h})
		}
	}
	sort.Slice(r.points, func(i, j int) bool { return r.points[i].hash < r.points[j].hash })
	return r
}

// murmur2 is MurmurHash64A with Envoy's seed, for hash_function
// murmur_hash_2.
func murmur2(key []byte) uint64 {
	const m, seed = 0xc6a4a7935bd1e995, 0xc70f6907
	h := uint64(seed) ^ uint64(len(key))*m
	for len(key) >= 8 {
		k := binary.LittleEndian.Uint64(key)
		k *= m
		k ^= k >> 47
		k *= m
		h ^= k
		h *= m
		key = key[8:]
	}
	if len(key) > 0 {
		var tail uint64
		for i := len(key) - 1; i >= 0; i-- {
			tail = tail<<8 | uint64(key[i])
		}
		h ^= tail
		h *= m
	}
	h ^= h >> 47
	h *= m
	h ^= h >> 47
	return h
}

type ringPoint struct {
	hash uint64
	host *Host
}

type ringHash struct {
	hosts  []*Host
	points []ringPoint
}

func (r *ringHash) Describe() string { return "ring_size=" + strconv.Itoa(len(r.points)) }

func (r *ringHash) Choose(ctx *LBContext) *Host {
	if len(r.points) == 0 {
		return nil
	}
	if ctx == nil || !ctx.HasHash {
		return r.hosts[rand.IntN(len(r.hosts))]
	}
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= ctx.Hash })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].host
}

// MaglevTableSize is prime, as Maglev requires (Envoy's default).
const MaglevTableSize = 65537

// NewMaglev is Google's Maglev consistent hashing: a lookup table filled by
// each host's permutation in turn, weighted, so hosts own near-equal shares
// and few keys move when the host set changes.
func NewMaglev(hosts []*Host) LoadBalancer { return newMaglev(hosts, MaglevTableSize) }

// newMaglev fills a table of M slots (M prime).
func newMaglev(hosts []*Host, M uint64) LoadBalancer {
	m := &maglev{hosts: hosts, size: M}
	if len(hosts) == 0 {
		return m
	}
	type perm struct{ offset, skip, next uint64 }
	perms := make([]perm, len(hosts))
	var maxW uint32
	for i, h := range hosts {
		a := []byte(h.Address)
		perms[i] = perm{offset: xxhash.Sum64(a) % M, skip: xxhash.Sum64(append(a, '#'))%(M-1) + 1}
		maxW = max(maxW, h.Weight)
	}
	m.table = make([]*Host, M)
	credit := make([]float64, len(hosts))
	filled := uint64(0)
	for filled < M {
		for i, h := range hosts {
			// Weighted turns: a host fills a slot each round its credit
			// reaches one; the heaviest fills every round.
			credit[i] += float64(h.Weight) / float64(maxW)
			if credit[i] < 1 {
				continue
			}
			credit[i]--
			p := &perms[i]
			for {
				slot := (p.offset + p.next*p.skip) % M
				p.next++
				if m.table[slot] == nil {
					m.table[slot] = h
					filled++
					break
				}
			}
			if filled == M {
				break
			}
		}
	}
	return m
}

type maglev struct {
	hosts []*Host
	table []*Host
	size  uint64 // len(table)
}

func (m *maglev) Describe() string { return "table_size=" + strconv.FormatUint(m.size, 10) }

func (m *maglev) Choose(ctx *LBContext) *Host {
	if len(m.hosts) == 0 {
		return nil
	}
	if ctx == nil || !ctx.HasHash {
		return m.hosts[rand.IntN(len(m.hosts))]
	}
	if m.size == MaglevTableSize {
		return m.table[ctx.Hash%MaglevTableSize] // the default: a constant modulus is a multiply, not a divide
	}
	return m.table[ctx.Hash%m.size]
}
