package proxy

import (
	"time"

	"github.com/proxylab/proxylab/transport"
)

// tcpLog is what a tcp_proxy connection's access log entry needs beyond the
// filter's own state; kept in the filter (no allocation), used only with
// TCPConfig.AccessLog.
type tcpLog struct {
	start       time.Time
	rx, tx      int64  // bytes from the client to the upstream, and back (user space)
	flags       string // Envoy response flags: UH, UF
	termination string // CONNECTION_TERMINATION_DETAILS
	logged      bool
}

// ended records why the pair ends, the first reason given.
func (f *tcpFilter) ended(flags, why string) {
	if f.log.termination == "" {
		f.log.flags, f.log.termination = flags, why
	}
}

// logClosed writes the connection's entry once both sides are closed (or
// the client is and no upstream connection was made).
func (f *tcpFilter) logClosed() {
	al := f.cfg.AccessLog
	if al == nil || f.log.logged || !f.closed[down] || !f.closed[up] && f.u != nil {
		return
	}
	f.log.logged = true
	e := al.Get()
	e.Start, e.Duration = f.log.start, time.Since(f.log.start)
	e.BytesReceived, e.BytesSent = f.log.rx, f.log.tx
	if s, ok := f.c.Transport().(transport.Splicer); ok && f.spliceTried {
		e.BytesReceived += int64(s.SplicedBytes())
	}
	if s, ok := f.u.(transport.Splicer); ok && f.spliceTried {
		e.BytesSent += int64(s.SplicedBytes())
	}
	if f.upHost != nil {
		e.UpstreamHost = f.upHost.Address
	}
	e.Cluster, e.Flags, e.Termination = f.cfg.Cluster.Name, f.log.flags, f.log.termination
	e.RemoteAddr = f.c.RemoteAddr().String()
	al.Log(e)
}
