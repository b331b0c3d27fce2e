package buffer

// Chain collects output in pooled buffers until it is handed to a writer
// (a connection), so the frames of one event leave in one vectored write.
// The zero value is empty.
type Chain struct{ bufs []*Buf }

// Write appends p (io.Writer; never fails).
func (c *Chain) Write(p []byte) (int, error) {
	if n := len(c.bufs); n > 0 && len(c.bufs[n-1].Free()) >= len(p) {
		return c.bufs[n-1].Append(p), nil
	}
	b := Get(max(len(p), 16<<10))
	b.Append(p)
	c.bufs = append(c.bufs, b)
	return len(p), nil
}

// Tail returns the last n bytes written, when they are in one buffer (as
// they are right after a Write of n bytes), for patching in place.
func (c *Chain) Tail(n int) []byte {
	if len(c.bufs) == 0 {
		return nil
	}
	b := c.bufs[len(c.bufs)-1].Bytes()
	if len(b) < n {
		return nil
	}
	return b[len(b)-n:]
}

// Len is the number of bytes collected.
func (c *Chain) Len() int {
	n := 0
	for _, b := range c.bufs {
		n += b.Len()
	}
	return n
}

// WriteTo hands the collected buffers to w, which takes ownership of them
// (not of the slice, which is kept for the next output). It returns what w
// reports still queued, and whether there was anything to write.
func (c *Chain) WriteTo(w interface {
	Write(bufs ...*Buf) (int, error)
}) (queued int, wrote bool) {
	if len(c.bufs) == 0 {
		return 0, false
	}
	q, _ := w.Write(c.bufs...)
	clear(c.bufs)
	c.bufs = c.bufs[:0]
	return q, true
}

// Drop releases what was collected.
func (c *Chain) Drop() {
	for _, b := range c.bufs {
		b.Release()
	}
	clear(c.bufs)
	c.bufs = c.bufs[:0]
}
