package buffer

// Input holds bytes read but not yet parsed. In the common case it is the
// transport's read buffer itself (no copy); bytes are copied only when a
// message spans reads. The zero value is empty.
type Input struct{ b *Buf }

// Add takes ownership of b and appends its bytes.
func (in *Input) Add(b *Buf) {
	if in.b == nil {
		in.b = b
		return
	}
	if len(in.b.Free()) < b.Len() {
		in.b.Compact()
	}
	if len(in.b.Free()) < b.Len() {
		nb := Get(in.b.Len() + b.Len())
		nb.Append(in.b.Bytes())
		in.b.Release()
		in.b = nb
	}
	in.b.Append(b.Bytes())
	b.Release()
}

// Bytes are the unparsed bytes, valid until the next Add, Consume or Reset.
func (in *Input) Bytes() []byte {
	if in.b == nil {
		return nil
	}
	return in.b.Bytes()
}

// Len is the number of unparsed bytes.
func (in *Input) Len() int {
	if in.b == nil {
		return 0
	}
	return in.b.Len()
}

// Consume drops the first n bytes, releasing the buffer when it empties.
func (in *Input) Consume(n int) {
	if in.b == nil {
		return
	}
	in.b.Consume(n)
	if in.b.Len() == 0 {
		in.b.Release()
		in.b = nil
	}
}

// Reset drops everything.
func (in *Input) Reset() {
	if in.b != nil {
		in.b.Release()
		in.b = nil
	}
}

// Take hands over the buffer holding the unparsed bytes (nil when empty).
func (in *Input) Take() *Buf {
	b := in.b
	in.b = nil
	return b
}
