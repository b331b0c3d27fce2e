package proxy

import (
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/core/upstream"
	"github.com/proxylab/proxylab/foundation/buffer"
)

// maxShadowBuffer bounds the body a shadow holds while its connection is
// not ready; beyond it the shadow is dropped, never the main request slowed.
const maxShadowBuffer = 64 << 10

// shadow is a fire-and-forget copy of a request to a mirror cluster. Its
// response is discarded; its failures, slowness and backpressure never reach
// the main request: a shadow that cannot keep up is dropped.
type shadow struct {
	s       *httpStream
	cl      *upstream.Cluster
	host    *upstream.Host
	head    protocol.Head
	enc     stream.RequestEncoder
	cancel  stream.Cancellable
	pending []*buffer.Buf
	held    int
	reqEnd  bool
	dead    bool
}

var (
	_ stream.ResponseDecoder = (*shadow)(nil)
	_ stream.PoolCallbacks   = (*shadow)(nil)
)

// startShadows opens the route's mirrors for this request.
func (s *httpStream) startShadows(h *stream.Head, end bool) {
	for _, m := range s.route.Mirrors {
		if m.Percent < 100 && randPercent() >= m.Percent {
			continue
		}
		cl := s.cm.cfg.Clusters.Get(m.Cluster)
		if cl == nil || !s.cm.fits(cl) {
			continue
		}
		host := cl.Choose(&upstream.LBContext{})
		if host == nil {
			continue
		}
		sh := &shadow{s: s, cl: cl, host: host, reqEnd: end}
		h.CloneInto(&sh.head, nil)
		// Envoy's convention: the shadow's Host says it is a shadow.
		sh.head.Headers.Set("Host", append(append([]byte(nil), h.Headers.Get(hdrHosts)...), "-shadow"...))
		host.RqTotal.Inc(s.cm.id)
		if st := cl.Stats; st != nil {
			st.UpstreamRqTotal.Inc(s.cm.id)
		}
		s.shadows = append(s.shadows, sh)
		sh.cancel = host.HTTPPool().NewStream(sh, s.enc.Session(), sh)
	}
}

func (sh *shadow) OnPoolReady(enc stream.RequestEncoder, _ bool) {
	sh.cancel = nil
	if sh.dead {
		enc.Reset()
		return
	}
	sh.enc = enc
	enc.EncodeHead(&sh.head, sh.reqEnd && len(sh.pending) == 0)
	for i, b := range sh.pending {
		enc.EncodeData(b.Bytes(), sh.reqEnd && i == len(sh.pending)-1)
		b.Release()
	}
	sh.pending = nil
}

func (sh *shadow) OnPoolFailure(stream.PoolFailure, error) { sh.cancel, sh.dead = nil, true }

// data copies request body bytes to the shadow.
func (sh *shadow) data(p []byte, end bool) {
	if sh.dead {
		return
	}
	if end {
		sh.reqEnd = true
	}
	if sh.enc != nil {
		sh.enc.EncodeData(p, end)
		return
	}
	if sh.held+len(p) > maxShadowBuffer {
		sh.drop()
		return
	}
	if len(p) > 0 {
		sh.pending = append(sh.pending, buffer.From(p))
		sh.held += len(p)
	}
}

// drop abandons the shadow.
func (sh *shadow) drop() {
	if sh.dead {
		return
	}
	sh.dead = true
	if sh.cancel != nil {
		sh.cancel.Cancel()
		sh.cancel = nil
	}
	if sh.enc != nil {
		sh.enc.Reset()
	}
	for _, b := range sh.pending {
		b.Release()
	}
	sh.pending = nil
}

// The response is discarded.
func (sh *shadow) DecodeInterim(*stream.Head)        {}
func (sh *shadow) DecodeHead(h *stream.Head, _ bool) { sh.cl.ReportResponse(sh.host, h.Status) }
func (sh *shadow) DecodeData([]byte, bool)           {}
func (sh *shadow) DecodeTrailers(*protocol.Headers)  {}
func (sh *shadow) OnReset(error)                     { sh.dead = true }

// A shadow that backs up is dropped rather than slowing the client.
func (sh *shadow) OnAboveWriteHighWatermark() { sh.drop() }
func (sh *shadow) OnBelowWriteLowWatermark()  {}
