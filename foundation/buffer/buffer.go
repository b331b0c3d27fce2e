// Package buffer is the pooled byte buffer shared by transports and the core.
//
// Ownership: a *Buf has exactly one owner at a time. Get hands ownership to the
// caller; passing a *Buf to a function documented as "takes ownership" (for
// example transport.Conn.Write) hands it over; Release returns it to the pool and
// the caller must not touch it afterwards. Buffers are not safe for concurrent
// use.
//
// Sizes come in classes (512 B, 4 KiB, 16 KiB, 64 KiB) so that a small read does
// not pin a large slab and a bulk transfer does not fragment into tiny writes.
package buffer

import (
	"sync"
	"sync/atomic"
)

// Class sizes, smallest first. Get(n) returns the smallest class >= n; larger
// requests are allocated exactly and never pooled.
var classes = [...]int{512, 4 << 10, 16 << 10, 64 << 10}

// MaxPooled is the largest size served from a pool.
const MaxPooled = 64 << 10

// Buf is a pooled byte slice with a read offset and a write offset:
// data is b[r:w]; b[w:] is free space to append into.
type Buf struct {
	b     []byte
	r, w  int
	class int8 // index into classes, or -1 when not pooled
}

var pools [len(classes)]sync.Pool

// Stats counts pool traffic so tests and benchmarks can assert reuse.
var stats struct {
	gets, allocs atomic.Uint64
}

// Get returns an empty buffer with capacity >= n, owned by the caller.
func Get(n int) *Buf {
	stats.gets.Add(1)
	for i, c := range classes {
		if n <= c {
			if v := pools[i].Get(); v != nil {
				return v.(*Buf)
			}
			stats.allocs.Add(1)
			return &Buf{b: make([]byte, c), class: int8(i)}
		}
	}
	stats.allocs.Add(1)
	return &Buf{b: make([]byte, n), class: -1}
}

// From returns a pooled buffer holding a copy of p.
func From(p []byte) *Buf {
	b := Get(len(p))
	b.w = copy(b.b, p)
	return b
}

// Release resets b and returns it to its pool. b must not be used afterwards.
// Release of nil is a no-op.
func (b *Buf) Release() {
	if b == nil {
		return
	}
	b.r, b.w = 0, 0
	if b.class >= 0 {
		pools[b.class].Put(b)
	}
}

// Bytes returns the unread data. The slice aliases the buffer.
func (b *Buf) Bytes() []byte { return b.b[b.r:b.w] }

// Len is the number of unread bytes.
func (b *Buf) Len() int { return b.w - b.r }

// Cap is the total capacity of the underlying slab.
func (b *Buf) Cap() int { return len(b.b) }

// Free returns the writable tail; after writing k bytes into it call Commit(k).
func (b *Buf) Free() []byte { return b.b[b.w:] }

// Commit marks k more bytes of Free() as data.
func (b *Buf) Commit(k int) { b.w += k }

// Consume drops k bytes from the front of the data.
func (b *Buf) Consume(k int) {
	b.r += k
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// Truncate keeps only the first k unread bytes.
func (b *Buf) Truncate(k int) { b.w = b.r + k }

// Append copies p into the free tail and returns how many bytes fit.
func (b *Buf) Append(p []byte) int {
	n := copy(b.b[b.w:], p)
	b.w += n
	return n
}

// AppendString is Append for a string.
func (b *Buf) AppendString(s string) int {
	n := copy(b.b[b.w:], s)
	b.w += n
	return n
}

// Compact moves unread data to the front, maximising Free().
func (b *Buf) Compact() {
	if b.r == 0 {
		return
	}
	n := copy(b.b, b.b[b.r:b.w])
	b.r, b.w = 0, n
}

// PoolStats reports how many buffers were requested and how many of those had
// to be allocated (the rest were reused).
func PoolStats() (gets, allocs uint64) { return stats.gets.Load(), stats.allocs.Load() }
