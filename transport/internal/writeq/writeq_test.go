package writeq

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/proxylab/proxylab/foundation/buffer"
)

func TestQueueWritesInOrderAcrossPartialConsumes(t *testing.T) {
	var q Queue
	q.Push([]*buffer.Buf{buffer.From([]byte("hello ")), buffer.Get(10), buffer.From([]byte("world"))})
	if q.Len() != 11 {
		t.Fatalf("len %d", q.Len())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var iov [MaxIov]unix.Iovec
	n, total := q.Iov(iov[:])
	if n != 2 || total != 11 {
		t.Fatalf("iov %d entries %d bytes; the empty buffer must not be queued", n, total)
	}
	wn, e := Writev(w.Fd(), iov[:n])
	if e != 0 || wn != 11 {
		t.Fatalf("writev %d %v", wn, e)
	}
	q.Consume(3) // pretend only 3 went out
	n, total = q.Iov(iov[:])
	if n != 2 || total != 8 {
		t.Fatalf("after partial consume: %d entries %d bytes", n, total)
	}
	q.Consume(8)
	if q.Len() != 0 || len(q.bufs) != 0 {
		t.Fatalf("not empty: %d bytes %d bufs", q.Len(), len(q.bufs))
	}
	got := make([]byte, 11)
	if _, err := r.Read(got); err != nil || !bytes.Equal(got, []byte("hello world")) {
		t.Fatalf("%q %v", got, err)
	}
	q.Push([]*buffer.Buf{buffer.From([]byte("x"))})
	q.Drop()
	if q.Len() != 0 {
		t.Fatal("drop left bytes")
	}
}
