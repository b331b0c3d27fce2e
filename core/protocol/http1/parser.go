// Package http1 is the HTTP/1.x codec: an incremental, zero-copy push parser
// for requests and responses (RFC 9112) and the head encoder. It has no
// connections; core/stream drives it.
//
// Framing is strict because a proxy that guesses lets two hops disagree about
// where a message ends (request smuggling): Content-Length together with
// Transfer-Encoding, a duplicate or invalid Content-Length, obs-fold, a bare CR,
// an invalid header name or value are all refused, never repaired.
package http1

import (
	"bytes"
	"log/slog"

	"github.com/proxylab/proxylab/core/protocol"
)

// Limits bound what a peer can make the parser hold.
type Limits struct {
	MaxRequestLine int // request-line bytes; over it: 414
	MaxHeaderBytes int // whole head (and trailer section) bytes; over it: 431
	MaxHeaders     int // header field count; over it: 431
}

// DefaultLimits are those of the embedded config.
var DefaultLimits = Limits{MaxRequestLine: 8 << 10, MaxHeaderBytes: 64 << 10, MaxHeaders: 100}

// Head is protocol.Head; see there.
type Head = protocol.Head

// Callbacks receive a message's parts in order: OnHead, OnBody*, OnTrailers?,
// OnComplete. A non-nil error aborts parsing and is returned by Parse.
type Callbacks interface {
	OnHead(h *Head) error
	// OnBody's p aliases the input; it is valid only during the call.
	OnBody(p []byte) error
	OnTrailers(t *protocol.Headers) error
	OnComplete() error
}

type state uint8

const (
	stHead state = iota
	stBodyLength
	stChunkSize
	stChunkData
	stChunkDataEnd
	stTrailers
	stUntilClose
	stDone
)

// Parser decodes one message at a time. After OnComplete it stops consuming
// until Reset, so the owner decides when the next pipelined message starts.
type Parser struct {
	resp  bool
	lim   Limits
	cb    Callbacks
	st    state
	head  Head
	trail protocol.Headers

	scanned int   // head bytes already scanned (no end found in them)
	remain  int64 // body bytes left in the current length or chunk

	// NoBody, set before parsing a response, says the request was HEAD so
	// the response has no body whatever its headers say.
	NoBody bool
}

// NewRequestParser returns a parser for requests.
func NewRequestParser(lim Limits, cb Callbacks) *Parser {
	return &Parser{lim: lim, cb: cb}
}

// NewResponseParser returns a parser for responses.
func NewResponseParser(lim Limits, cb Callbacks) *Parser {
	return &Parser{resp: true, lim: lim, cb: cb}
}

// Rebind gives a pooled parser new limits and callbacks (nil to drop the
// reference while pooled) and resets it. Decoded field storage is kept.
func (p *Parser) Rebind(lim Limits, cb Callbacks) {
	p.lim, p.cb = lim, cb
	p.Reset()
	p.head.Headers.Reset()
	p.trail.Reset()
}

// Reset readies the parser for the next message.
func (p *Parser) Reset() {
	p.st, p.scanned, p.remain, p.NoBody = stHead, 0, 0, false
}

// Done reports whether a whole message has been parsed since Reset.
func (p *Parser) Done() bool { return p.st == stDone }

// LastBody reports, during OnBody, whether this piece ends a
// Content-Length body (so the consumer can mark it as the end of the stream).
func (p *Parser) LastBody() bool { return p.st == stBodyLength && p.remain == 0 }

// Idle reports whether no byte of a message has been consumed since Reset.
func (p *Parser) Idle() bool { return p.st == stHead && p.scanned == 0 }

// InHead reports whether the parser is still waiting for a complete head.
func (p *Parser) InHead() bool { return p.st == stHead }

func perr(status int, reason string) error { return &protocol.Error{Status: status, Reason: reason} }

var (
	errBadRequest     = perr(400, "bad request")
	errBareCR         = perr(400, "bare CR in head")
	errObsFold        = perr(400, "obs-fold header line")
	errHeaderName     = perr(400, "invalid header name")
	errHeaderValue    = perr(400, "invalid header value")
	errBadCL          = perr(400, "invalid Content-Length")
	errDupCL          = perr(400, "duplicate Content-Length")
	errCLAndTE        = perr(400, "both Content-Length and Transfer-Encoding")
	errTE10           = perr(400, "Transfer-Encoding in HTTP/1.0")
	errTEUnsupported  = perr(501, "unsupported Transfer-Encoding")
	errBadVersion     = perr(505, "HTTP version not supported")
	errURITooLong     = perr(414, "request line too long")
	errHeadTooLarge   = perr(431, "header section too large")
	errTooManyHeaders = perr(431, "too many header fields")
	errBadChunk       = perr(400, "invalid chunked encoding")
	errNoHost         = perr(400, "missing or duplicate Host")
	errTruncated      = perr(400, "message truncated")
)

// Parse consumes as much of in as it can and returns how many bytes it used.
// Fewer than len(in) with a nil error means: either a message completed (see
// Done) or the rest is an incomplete head or chunk line, which the caller keeps
// and passes again, followed by more bytes.
func (p *Parser) Parse(in []byte) (int, error) {
	n := 0
	for n < len(in) {
		switch p.st {
		case stHead:
			k, err := p.parseHead(in[n:])
			if err != nil || k == 0 {
				return n, err
			}
			n += k
		case stBodyLength:
			k := min(int64(len(in)-n), p.remain)
			p.remain -= k // before OnBody, so LastBody is true during the last piece
			if err := p.cb.OnBody(in[n : n+int(k)]); err != nil {
				return n, err
			}
			n += int(k)
			if p.remain == 0 {
				if err := p.complete(); err != nil {
					return n, err
				}
			}
		case stUntilClose:
			if err := p.cb.OnBody(in[n:]); err != nil {
				return n, err
			}
			n = len(in)
		case stChunkSize:
			k, err := p.parseChunkSize(in[n:])
			if err != nil || k == 0 {
				return n, err
			}
			n += k
		case stChunkData:
			k := min(int64(len(in)-n), p.remain)
			if err := p.cb.OnBody(in[n : n+int(k)]); err != nil {
				return n, err
			}
			n += int(k)
			p.remain -= k
			if p.remain == 0 {
				p.st = stChunkDataEnd
			}
		case stChunkDataEnd:
			if len(in)-n < 2 {
				if in[n] != '\r' {
					return n, errBadChunk
				}
				return n, nil
			}
			if in[n] != '\r' || in[n+1] != '\n' {
				return n, errBadChunk
			}
			n += 2
			p.st = stChunkSize
		case stTrailers:
			k, err := p.parseTrailers(in[n:])
			if err != nil || k == 0 {
				return n, err
			}
			n += k
		case stDone:
			return n, nil
		}
		if p.st == stDone {
			return n, nil
		}
	}
	return n, nil
}

// EOF tells the parser the input ended. It completes a read-until-close body
// and reports a truncated message otherwise (nil between messages).
func (p *Parser) EOF() error {
	switch {
	case p.st == stUntilClose:
		return p.complete()
	case p.st == stDone || p.Idle():
		return nil
	}
	return errTruncated
}

func (p *Parser) complete() error {
	p.st = stDone
	return p.cb.OnComplete()
}

// findHeadEnd returns the offset just past the empty line ending the head, or
// -1. Lines end in LF with an optional CR before it (RFC 9112 §2.2).
func (p *Parser) findHeadEnd(in []byte) int {
	i := p.scanned
	for {
		j := bytes.IndexByte(in[i:], '\n')
		if j < 0 {
			return -1
		}
		lineEnd := i + j + 1
		line := in[i : i+j]
		if (len(line) == 0 || (len(line) == 1 && line[0] == '\r')) && i > 0 {
			return lineEnd
		}
		i = lineEnd
		p.scanned = i
	}
}

func (p *Parser) parseHead(in []byte) (int, error) {
	// RFC 9112 §2.2: a server SHOULD ignore empty lines before a request-line.
	skip := 0
	if p.scanned == 0 && !p.resp {
		for skip < len(in) && (in[skip] == '\r' || in[skip] == '\n') {
			if in[skip] == '\r' && (skip+1 >= len(in) || in[skip+1] != '\n') {
				if skip+1 >= len(in) {
					return 0, nil
				}
				return 0, errBareCR
			}
			skip++
		}
		if skip == len(in) {
			return skip, nil
		}
		if skip > 0 {
			return skip, nil
		}
	}
	end := p.findHeadEnd(in)
	if end < 0 {
		limit := len(in)
		if !p.resp && p.scanned == 0 && limit > p.lim.MaxRequestLine {
			return 0, errURITooLong
		}
		if limit > p.lim.MaxHeaderBytes {
			return 0, errHeadTooLarge
		}
		return 0, nil
	}
	if end > p.lim.MaxHeaderBytes {
		return 0, errHeadTooLarge
	}
	if err := p.decodeHead(in[:end]); err != nil {
		return 0, err
	}
	p.scanned = 0
	// The body is framed by what was parsed, whatever the callback does to
	// the head it is lent (a stream filter rewriting Content-Length or
	// chunking for its own output must not change how these bytes read).
	fr := framing{status: p.head.Status, chunked: p.head.Chunked, length: p.head.ContentLength}
	if err := p.cb.OnHead(&p.head); err != nil {
		return end, err
	}
	p.startBody(fr)
	if p.st == stDone {
		if err := p.cb.OnComplete(); err != nil {
			return end, err
		}
	}
	return end, nil
}

// nextLine splits off one line, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func (p *Parser) decodeHead(b []byte) error {
	h := &p.head
	h.Headers.Reset()
	h.Method, h.Target, h.Reason, h.Status = nil, nil, nil, 0
	h.ContentLength, h.Chunked, h.Close, h.ExpectContinue, h.Upgrade = -1, false, false, false, false

	first, rest := nextLine(b)
	if !p.resp && len(first) > p.lim.MaxRequestLine {
		return errURITooLong
	}
	var err error
	if p.resp {
		err = p.decodeStatusLine(first)
	} else {
		err = p.decodeRequestLine(first)
	}
	if err != nil {
		return err
	}
	if err := p.decodeFields(rest, &h.Headers); err != nil {
		return err
	}
	if err := p.applyFraming(); err != nil {
		return err
	}
	if p.resp {
		return nil
	}
	return p.normalizeTarget()
}

func (p *Parser) decodeRequestLine(l []byte) error {
	h := &p.head
	sp := bytes.IndexByte(l, ' ')
	if sp <= 0 {
		return errBadRequest
	}
	h.Method = l[:sp]
	for _, c := range h.Method {
		if !isTchar(c) {
			return perr(400, "invalid method")
		}
	}
	l = l[sp+1:]
	sp = bytes.IndexByte(l, ' ')
	if sp <= 0 {
		return errBadRequest
	}
	h.Target = l[:sp]
	for _, c := range h.Target {
		if c <= ' ' || c >= 0x7f {
			return perr(400, "invalid request target")
		}
	}
	if !validPercent(h.Target) {
		return perr(400, "invalid percent-encoding in request target")
	}
	minor, err := parseVersion(l[sp+1:])
	if err != nil {
		return err
	}
	h.Minor = minor
	return nil
}

func (p *Parser) decodeStatusLine(l []byte) error {
	h := &p.head
	if len(l) < 12 || l[8] != ' ' {
		return perr(502, "invalid status line")
	}
	minor, err := parseVersion(l[:8])
	if err != nil {
		return perr(502, "invalid status line version")
	}
	h.Minor = minor
	s := l[9:12]
	for _, c := range s {
		if c < '0' || c > '9' {
			return perr(502, "invalid status code")
		}
	}
	h.Status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	if h.Status < 100 {
		return perr(502, "invalid status code")
	}
	if len(l) > 12 {
		if l[12] != ' ' {
			return perr(502, "invalid status line")
		}
		h.Reason = l[13:]
		for _, c := range h.Reason {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return perr(502, "invalid reason phrase")
			}
		}
	}
	return nil
}

func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, perr(400, "invalid HTTP version")
	}
	if v[5] != '1' {
		return 0, errBadVersion
	}
	return int(v[7] - '0'), nil
}

func (p *Parser) decodeFields(b []byte, hs *protocol.Headers) error {
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			break // the final empty line
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			return errHeaderName
		}
		name := line[:c]
		for _, ch := range name {
			if !isTchar(ch) {
				return errHeaderName
			}
		}
		v := line[c+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		for _, ch := range v {
			if (ch < ' ' && ch != '\t') || ch == 0x7f {
				if ch == '\r' {
					return errBareCR
				}
				return errHeaderValue
			}
		}
		if len(hs.Fields) >= p.lim.MaxHeaders {
			return errTooManyHeaders
		}
		hs.Fields = append(hs.Fields, protocol.Field{Name: name, Value: v})
	}
	return nil
}

// applyFraming derives body framing and connection semantics from the head
// (RFC 9112 §6 and §9), refusing anything ambiguous.
func (p *Parser) applyFraming() error {
	h := &p.head
	var te []byte
	sawCL, sawTE, hosts := false, false, 0
	for _, f := range h.Headers.Fields {
		switch {
		case protocol.EqualFold(f.Name, "content-length"):
			if sawCL {
				return p.framingErr(errDupCL)
			}
			sawCL = true
			n, ok := parseContentLength(f.Value)
			if !ok {
				return p.framingErr(errBadCL)
			}
			h.ContentLength = n
		case protocol.EqualFold(f.Name, "transfer-encoding"):
			if sawTE {
				return p.framingErr(errTEUnsupported)
			}
			sawTE, te = true, f.Value
		case protocol.EqualFold(f.Name, "connection"):
			if protocol.HasToken(f.Value, "close") {
				h.Close = true
			}
			if protocol.HasToken(f.Value, "upgrade") {
				h.Upgrade = true
			}
		case protocol.EqualFold(f.Name, "expect"):
			if protocol.EqualFold(f.Value, "100-continue") {
				h.ExpectContinue = true
			}
		case protocol.EqualFold(f.Name, "host"):
			hosts++
		}
	}
	if h.Minor == 0 && !h.Close && !protocol.HasToken(h.Headers.Get("connection"), "keep-alive") {
		h.Close = true
	}
	if sawTE {
		if sawCL {
			return p.framingErr(errCLAndTE)
		}
		if h.Minor == 0 && !p.resp {
			return errTE10
		}
		if !protocol.EqualFold(bytes.TrimSpace(te), "chunked") {
			if p.resp {
				// RFC 9112 §6.3: a response whose final coding is not chunked
				// is delimited by closing the connection.
				h.ContentLength = -1
				h.Close = true
				return nil
			}
			return errTEUnsupported
		}
		h.Chunked = true
	}
	// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for any
	// request (1.0 too) with more than one.
	if !p.resp && (hosts > 1 || h.Minor == 1 && hosts != 1) {
		return errNoHost
	}
	return nil
}

func (p *Parser) framingErr(e error) error {
	if p.resp {
		return perr(502, e.(*protocol.Error).Reason)
	}
	return e
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// framing is what decides how a message's body is read.
type framing struct {
	status  int
	chunked bool
	length  int64
}

func (p *Parser) startBody(fr framing) {
	if p.resp && (p.NoBody || fr.status < 200 || fr.status == 204 || fr.status == 304) {
		p.st = stDone
		return
	}
	switch {
	case fr.chunked:
		p.st = stChunkSize
	case fr.length > 0:
		p.st, p.remain = stBodyLength, fr.length
	case fr.length == 0 || !p.resp:
		p.st = stDone
	default:
		p.head.Close = true
		p.st = stUntilClose
	}
}

// maxChunkLine bounds a chunk-size line including extensions.
const maxChunkLine = 4 << 10

func (p *Parser) parseChunkSize(in []byte) (int, error) {
	i := bytes.IndexByte(in, '\n')
	if i < 0 {
		if len(in) > maxChunkLine {
			return 0, errBadChunk
		}
		return 0, nil
	}
	if i == 0 || in[i-1] != '\r' {
		return 0, errBadChunk
	}
	line := in[:i-1]
	var size int64
	digits := 0
	for digits < len(line) {
		c := line[digits]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if digits >= 15 {
			return 0, errBadChunk
		}
		size = size<<4 | int64(d)
		digits++
	}
ext:
	if digits == 0 {
		return 0, errBadChunk
	}
	for _, c := range line[digits:] {
		// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] );
		// ignored, but it must not hide control bytes.
		if (c < ' ' && c != '\t') || c == 0x7f {
			return 0, errBadChunk
		}
	}
	if rest := line[digits:]; len(rest) > 0 {
		r := bytes.TrimLeft(rest, " \t")
		if len(r) == 0 || r[0] != ';' {
			return 0, errBadChunk
		}
	}
	if size == 0 {
		p.st = stTrailers
		p.scanned = 0
	} else {
		p.st, p.remain = stChunkData, size
	}
	return i + 1, nil
}

func (p *Parser) parseTrailers(in []byte) (int, error) {
	if in[0] == '\n' || (len(in) >= 2 && in[0] == '\r' && in[1] == '\n') {
		// No trailers: the last-chunk is followed directly by CRLF.
		k := 1
		if in[0] == '\r' {
			k = 2
		}
		return k, p.complete()
	}
	if len(in) == 1 && in[0] == '\r' {
		return 0, nil
	}
	// Trailers end in an empty line; reuse the head scanner with a fake
	// leading position so the first line may itself end the section.
	end := -1
	i := p.scanned
	for {
		j := bytes.IndexByte(in[i:], '\n')
		if j < 0 {
			break
		}
		line := in[i : i+j]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			end = i + j + 1
			break
		}
		i += j + 1
		p.scanned = i
	}
	if end < 0 {
		if len(in) > p.lim.MaxHeaderBytes {
			return 0, errHeadTooLarge
		}
		return 0, nil
	}
	if end > p.lim.MaxHeaderBytes {
		return 0, errHeadTooLarge
	}
	p.trail.Reset()
	if err := p.decodeFields(in[:end], &p.trail); err != nil {
		return 0, err
	}
	p.scanned = 0
	if n := FilterTrailers(&p.trail); n > 0 {
		slog.Debug("http1: dropped forbidden trailer fields", "count", n)
	}
	if len(p.trail.Fields) > 0 {
		if err := p.cb.OnTrailers(&p.trail); err != nil {
			return end, err
		}
	}
	return end, p.complete()
}

// tchar per RFC 9110 §5.6.2.
var tcharTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

func isTchar(c byte) bool { return tcharTable[c] }
