package buffer

import (
	"bytes"
	"testing"
)

func TestGetClass(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{0, 512}, {1, 512}, {512, 512}, {513, 4096}, {4096, 4096}, {10000, 16384}, {65536, 65536}, {70000, 70000},
	} {
		b := Get(tc.n)
		if b.Cap() != tc.want || b.Len() != 0 {
			t.Errorf("Get(%d): cap %d len %d, want cap %d len 0", tc.n, b.Cap(), b.Len(), tc.want)
		}
		b.Release()
	}
}

func TestReadWriteOffsets(t *testing.T) {
	b := Get(16)
	defer b.Release()
	if n := b.AppendString("hello world"); n != 11 {
		t.Fatalf("append %d", n)
	}
	b.Consume(6)
	if got := string(b.Bytes()); got != "world" {
		t.Fatalf("after consume: %q", got)
	}
	b.Compact()
	if b.r != 0 || string(b.Bytes()) != "world" {
		t.Fatalf("compact: r=%d %q", b.r, b.Bytes())
	}
	b.Truncate(3)
	if string(b.Bytes()) != "wor" {
		t.Fatalf("truncate: %q", b.Bytes())
	}
	b.Consume(3)
	if b.Len() != 0 || len(b.Free()) != b.Cap() {
		t.Fatalf("consume all should reset offsets: len %d free %d", b.Len(), len(b.Free()))
	}
}

func TestReleasedBufferIsReused(t *testing.T) {
	// sync.Pool may drop items under GC; retry a few times to observe reuse.
	for i := 0; i < 100; i++ {
		b := Get(100)
		b.AppendString("x")
		b.Release()
		_, a0 := PoolStats()
		c := Get(100)
		_, a1 := PoolStats()
		if c.Len() != 0 {
			t.Fatalf("reused buffer not reset: %q", c.Bytes())
		}
		c.Release()
		if a1 == a0 {
			return
		}
	}
	t.Fatal("pool never reused a released buffer")
}

func TestFromCopies(t *testing.T) {
	src := []byte("abc")
	b := From(src)
	src[0] = 'z'
	if !bytes.Equal(b.Bytes(), []byte("abc")) {
		t.Fatalf("From aliases input: %q", b.Bytes())
	}
	b.Release()
}

func BenchmarkGetRelease(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		x := Get(4096)
		x.Commit(100)
		x.Release()
	}
}
