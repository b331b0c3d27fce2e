// Package compressor compresses responses (gzip, br, zstd) for clients
// that accept it, as Envoy's compressor filter: negotiated from
// Accept-Encoding by the server's preference among the codings the client
// accepts with q > 0; only 200 responses with a body, of a listed content
// type and at least min_content_length long, without Content-Encoding or
// Cache-Control: no-transform, and not to HEAD or gRPC requests. A
// compressed response gets Content-Encoding and Vary: Accept-Encoding and
// loses Content-Length (chunked on HTTP/1.1, DATA frames on HTTP/2).
//
// Streaming: each body piece is compressed and flushed as it passes, so the
// client gets compressed bytes as soon as the upstream sends; the final
// block goes with the last piece or, before trailers, via AddEncodedData.
// Writers are pooled per encoding.
package compressor

import (
	"bytes"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/foundation/stats"
)

// Module is the filter's registration (cmd/proxylab/builtins.go).
var Module = filter.Module{Name: "compressor", Kinds: filter.HTTP, Decode: decode}

type encodingStats struct {
	Compressed, BytesIn, BytesOut stats.Counter
}

// Factory is a configured compressor; read-only after decode.
type Factory struct {
	cfg           *Config
	encodings     []*encoding // preference order
	contentTypes  [][]byte
	NotCompressed stats.Counter
	streams       sync.Pool // *stream
}

var (
	_ filter.Factory       = (*Factory)(nil)
	_ filter.DecoderFilter = (*stream)(nil)
	_ filter.EncoderFilter = (*stream)(nil)
	_ stats.Collector      = (*Factory)(nil)
)

func decode(raw *yaml.Node, path string) (filter.Factory, []error) {
	c, errs := registry.Decode[Config](raw, path)
	if len(errs) > 0 {
		return nil, errs
	}
	f := &Factory{cfg: c}
	for _, e := range c.Encodings {
		f.encodings = append(f.encodings, newEncoding(e.Name, *e.Level))
	}
	for _, t := range c.ContentType {
		f.contentTypes = append(f.contentTypes, []byte(t))
	}
	return f, nil
}

// Collect implements stats.Collector.
func (f *Factory) Collect(emit stats.Emit) {
	for _, e := range f.encodings {
		l := stats.Label{Name: "encoding", Value: e.name}
		emit("compressor_compressed_total", "Responses compressed, by encoding.", stats.CounterKind, float64(e.stats.Compressed.Value()), l)
		emit("compressor_uncompressed_bytes_total", "Body bytes before compression, by encoding.", stats.CounterKind, float64(e.stats.BytesIn.Value()), l)
		emit("compressor_compressed_bytes_total", "Body bytes after compression, by encoding.", stats.CounterKind, float64(e.stats.BytesOut.Value()), l)
	}
	emit("compressor_not_compressed_total", "Responses to clients accepting compression sent uncompressed (type, length, status, encoding).", stats.CounterKind, float64(f.NotCompressed.Value()))
}

// stream is one request's compressor state; pooled, returned at OnDestroy.
type stream struct {
	f      *Factory
	s      filter.Stream
	chosen *encoding // negotiated from the request; nil: none
	w      writer    // active compressor; nil when not compressing
	out    sink
	etag   []byte
	key    uint64 // counter shard
}

// NewFilter implements filter.Factory.
func (f *Factory) NewFilter(s filter.Stream) filter.Filter {
	st, _ := f.streams.Get().(*stream)
	if st == nil {
		st = &stream{f: f}
	}
	st.s = s
	st.key++
	return st
}

func (st *stream) OnDestroy() {
	st.release()
	st.s, st.chosen = nil, nil
	st.out.b, st.etag = st.out.b[:0], st.etag[:0]
	st.f.streams.Put(st)
}

func (st *stream) release() {
	if st.w != nil {
		st.chosen.put(st.w)
		st.w = nil
	}
}

// DecodeHeaders negotiates the coding (nothing for HEAD and gRPC).
func (st *stream) DecodeHeaders(h *protocol.Head, end bool) filter.Status {
	ae := h.Headers.Get("accept-encoding")
	if ae == nil || string(h.Method) == "HEAD" || st.s.Info().GRPC() {
		return filter.Continue
	}
	st.chosen = negotiate(ae, st.f.encodings)
	if st.f.cfg.RemoveAcceptEncodingHeader {
		h.Headers.Del("accept-encoding")
	}
	return filter.Continue
}

func (st *stream) DecodeData(*filter.Body, bool) filter.Status    { return filter.Continue }
func (st *stream) DecodeTrailers(*protocol.Headers) filter.Status { return filter.Continue }

// EncodeHeaders decides whether this response is compressed and rewrites
// its head when it is.
func (st *stream) EncodeHeaders(h *protocol.Head, end bool) filter.Status {
	if st.chosen == nil || end {
		return filter.Continue
	}
	if !st.compressible(h) {
		st.f.NotCompressed.Inc(st.key)
		st.chosen = nil
		return filter.Continue
	}
	if et := h.Headers.Get("etag"); et != nil && !bytes.HasPrefix(et, []byte("W/")) {
		st.etag = append(append(st.etag[:0], "W/"...), et...)
		h.Headers.Set("etag", st.etag)
	}
	h.Headers.Del("content-length")
	h.ContentLength = -1
	h.Headers.Set("content-encoding", st.chosen.token)
	addVary(h)
	st.w = st.chosen.get(&st.out)
	st.chosen.stats.Compressed.Inc(st.key)
	return filter.Continue
}

// compressible applies the rules of the package comment to the head.
func (st *stream) compressible(h *protocol.Head) bool {
	f := st.f
	if h.Status != 200 {
		return false
	}
	if ce := h.Headers.Get("content-encoding"); ce != nil && !protocol.EqualFold(bytes.TrimSpace(ce), "identity") {
		return false
	}
	if cc := h.Headers.Get("cache-control"); cc != nil && protocol.HasToken(cc, "no-transform") {
		return false
	}
	if f.cfg.DisableOnETagHeader && h.Headers.Has("etag") {
		return false
	}
	n := h.ContentLength
	if cl := h.Headers.Get("content-length"); cl != nil {
		if v, err := strconv.ParseInt(string(bytes.TrimSpace(cl)), 10, 64); err == nil {
			n = v
		}
	}
	if n >= 0 && n < f.cfg.MinContentLength {
		return false
	}
	if ct := h.Headers.Get("content-type"); ct != nil {
		if i := bytes.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		ct = bytes.TrimSpace(ct)
		for _, t := range f.contentTypes {
			if len(t) == len(ct) && protocol.EqualFold(ct, string(t)) {
				return true
			}
		}
		return false
	}
	return true
}

var varyValue = []byte("Accept-Encoding")

// addVary adds Accept-Encoding to Vary unless it is there (or "*").
func addVary(h *protocol.Head) {
	v := h.Headers.Get("vary")
	if v == nil {
		h.Headers.Add("vary", varyValue)
		return
	}
	if protocol.HasToken(v, "accept-encoding") || protocol.HasToken(v, "*") {
		return
	}
	h.Headers.Set("vary", append(append(bytes.Clone(v), ", "...), "Accept-Encoding"...))
}

// EncodeData compresses the piece and flushes, or finishes the stream on
// the last piece.
func (st *stream) EncodeData(b *filter.Body, end bool) filter.Status {
	if st.w == nil || (len(b.Bytes) == 0 && !end) {
		return filter.Continue
	}
	st.out.b = st.out.b[:0]
	var err error
	if len(b.Bytes) > 0 {
		_, err = st.w.Write(b.Bytes)
	}
	key := st.key
	st.chosen.stats.BytesIn.Add(key, uint64(len(b.Bytes)))
	if err == nil {
		if end {
			err = st.w.Close()
		} else {
			err = st.w.Flush()
		}
	}
	if end {
		st.release()
	}
	if err != nil { // writing to a slice: only a library bug gets here
		st.s.SendLocalReply(filter.LocalReply{Status: 500, Body: "compressor: " + err.Error()})
		return filter.Stop
	}
	st.chosen.stats.BytesOut.Add(key, uint64(len(st.out.b)))
	b.Bytes = st.out.b
	return filter.Continue
}

// EncodeTrailers sends the final block before the trailers.
func (st *stream) EncodeTrailers(*protocol.Headers) filter.Status {
	if st.w == nil {
		return filter.Continue
	}
	st.out.b = st.out.b[:0]
	err := st.w.Close()
	st.release()
	if err == nil {
		st.chosen.stats.BytesOut.Add(st.key, uint64(len(st.out.b)))
		st.s.AddEncodedData(st.out.b)
	}
	return filter.Continue
}

// negotiate picks the first of encs (server preference) the client
// accepts with q > 0, explicitly or through "*"; nil when none.
func negotiate(ae []byte, encs []*encoding) *encoding {
	var best *encoding
	bestRank := len(encs)
	starQ := -1
	explicit := uint32(0) // bit i: encs[i] named explicitly
	for len(ae) > 0 {
		var item []byte
		if i := bytes.IndexByte(ae, ','); i >= 0 {
			item, ae = ae[:i], ae[i+1:]
		} else {
			item, ae = ae, nil
		}
		name, params, _ := bytes.Cut(item, []byte(";"))
		name = bytes.TrimSpace(name)
		q := qvalue(params)
		if len(name) == 1 && name[0] == '*' {
			starQ = q
			continue
		}
		for i, e := range encs {
			if protocol.EqualFold(name, e.name) || (e.name == "gzip" && protocol.EqualFold(name, "x-gzip")) {
				explicit |= 1 << i
				if q > 0 && i < bestRank {
					best, bestRank = e, i
				}
			}
		}
	}
	if starQ > 0 {
		for i, e := range encs {
			if explicit&(1<<i) == 0 && i < bestRank {
				return e
			}
		}
	}
	return best
}

// qvalue parses ";q=0.5" in thousandths; 1000 without q, 0 when malformed.
func qvalue(params []byte) int {
	for len(params) > 0 {
		var p []byte
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, nil
		}
		k, v, ok := bytes.Cut(bytes.TrimSpace(p), []byte("="))
		if !ok || !protocol.EqualFold(bytes.TrimSpace(k), "q") {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || (v[0] != '0' && v[0] != '1') {
			return 0
		}
		q := int(v[0]-'0') * 1000
		if len(v) > 1 {
			if v[1] != '.' || len(v) > 5 {
				return 0
			}
			mul := 100
			for _, c := range v[2:] {
				if c < '0' || c > '9' {
					return 0
				}
				q += int(c-'0') * mul
				mul /= 10
			}
		}
		if q > 1000 {
			return 0
		}
		return q
	}
	return 1000
}
