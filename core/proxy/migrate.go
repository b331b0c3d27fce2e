package proxy

import "github.com/proxylab/proxylab/core/network"

var _ network.Migrator = (*httpFilter)(nil)

// Migrate hands the connection over (hot upgrade) through its codec; one
// whose protocol is not known yet moves at once with what it sent so far.
// Codecs that cannot export their state (HTTP/2's HPACK tables and
// settings) refuse and drain instead.
func (f *httpFilter) Migrate(c *network.Conn) bool {
	if f.codec == nil {
		f.idle.Stop()
		c.HandOver()
		return true
	}
	m, ok := f.codec.(network.Migrator)
	return ok && m.Migrate(c)
}

// Unhandled gives up the bytes read but not handled (network.Migrator).
func (f *httpFilter) Unhandled(c *network.Conn) []byte {
	if f.codec == nil {
		b := append([]byte(nil), f.held.Bytes()...)
		f.held.Reset()
		return b
	}
	return f.codec.(network.Migrator).Unhandled(c)
}
