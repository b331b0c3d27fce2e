// Package writeq is the pending-write queue socket transports share:
// pooled buffers written in order with vectored writes, consumed as the
// socket takes them.
package writeq

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
)

// MaxIov bounds one writev call (IOV_MAX is 1024 on Linux).
const MaxIov = 64

// Queue is not safe for concurrent use; the transport guards it with its
// write lock. The zero value is empty.
type Queue struct {
	bufs []*buffer.Buf
	n    int
}

// Push takes ownership of bufs, releasing empty ones.
func (q *Queue) Push(bufs []*buffer.Buf) {
	for _, b := range bufs {
		if b.Len() == 0 {
			b.Release()
			continue
		}
		q.bufs = append(q.bufs, b)
		q.n += b.Len()
	}
}

// Len is the number of bytes queued.
func (q *Queue) Len() int { return q.n }

// Consume drops n written bytes from the front, releasing finished buffers.
// The slice keeps its backing array, so the steady state allocates nothing.
func (q *Queue) Consume(n int) {
	q.n -= n
	i := 0
	for ; i < len(q.bufs) && n > 0; i++ {
		b := q.bufs[i]
		if l := b.Len(); l <= n {
			n -= l
			b.Release()
			continue
		}
		b.Consume(n)
		break
	}
	k := copy(q.bufs, q.bufs[i:])
	clear(q.bufs[k:])
	q.bufs = q.bufs[:k]
}

// Drop releases everything queued.
func (q *Queue) Drop() {
	for _, b := range q.bufs {
		b.Release()
	}
	clear(q.bufs)
	q.bufs, q.n = q.bufs[:0], 0
}

// Iov points iov at the head of the queue and returns the entries used and
// the bytes they cover. The iovecs alias the buffers: write before the next
// Consume or Drop.
func (q *Queue) Iov(iov []unix.Iovec) (n, total int) {
	for _, b := range q.bufs {
		if n == len(iov) {
			break
		}
		p := b.Bytes()
		iov[n].Base = &p[0]
		iov[n].SetLen(len(p))
		total += len(p)
		n++
	}
	return n, total
}

// Writev writes iov to fd once, retrying EINTR; errno is 0 on success and
// EAGAIN when the socket is full.
func Writev(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	for {
		n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), 0
	}
}
