package network

// Hot reload of a listener that keeps its socket: Update gives new
// connections a new chain, and the connections of the earlier generations
// are drained (DrainGen) and, after the caller's drain timeout, closed
// (CloseGen). Accepting never stops, so no connection attempt is refused.

// Update makes connections accepted from now on run filters and chain, and
// returns the generation of those accepted before (for DrainGen and
// CloseGen). A connection that took the old chain while Update ran is
// drained as soon as it starts.
func (l *Listener) Update(filters []ListenerFilter, chain ChainFactory) (old uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old = l.gen
	l.filters, l.chain = filters, chain
	l.gen++
	return old
}

// conns returns the open connections of generation gen or earlier.
func (l *Listener) connsUpTo(gen uint64) []*Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*Conn
	for c := range l.conns {
		if c.gen <= gen {
			out = append(out, c)
		}
	}
	return out
}

// DrainGen asks the connections of generation gen or earlier to finish
// gracefully (HTTP/1: Connection: close on the next response, or closed
// when idle between requests; HTTP/2: GOAWAY; tcp_proxy: left to finish).
func (l *Listener) DrainGen(gen uint64) {
	for _, c := range l.connsUpTo(gen) {
		c.drainWhenActive()
	}
}

// drainWhenActive drains c now, or, when nothing has arrived on it yet, once
// its first bytes have been handled: its client may be sending its first
// request right now, and closing the connection would fail it (Envoy does
// not close such connections at a listener update either). A connection
// that stays silent is closed at the caller's drain deadline (CloseGen).
func (c *Conn) drainWhenActive() {
	c.mu.Lock()
	if c.gotData {
		c.drainLocked()
	} else {
		c.drainOnData = true
	}
	c.Unlock()
}

// CloseGen closes the connections of generation gen or earlier that are
// still open.
func (l *Listener) CloseGen(gen uint64) {
	for _, c := range l.connsUpTo(gen) {
		c.Close()
	}
}

// ActiveGen counts the open connections of generation gen or earlier.
func (l *Listener) ActiveGen(gen uint64) int { return len(l.connsUpTo(gen)) }

// Retire stops accepting and drains every connection as DrainGen does (a
// listener removed or moved by a reload); Close ends what is left.
func (l *Listener) Retire() {
	for _, c := range l.stop() {
		c.drainWhenActive()
	}
}
