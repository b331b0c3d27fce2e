// Package upstream is proxybench's own origin server for benchmarks: HTTP/1.1
// keep-alive with fixed-size responses, an echo path and an optional delay,
// parsed with proxylab's own HTTP/1 parser so a malformed request gets the
// same strict 400 a proxy would give.
//
//	GET  /anything          → 200 with Config.Size bytes
//	GET  /?size=N&delay=D   → N bytes after D (a Go duration), per request
//	POST /echo              → 200 with the request body
//
// One goroutine per connection, requests answered in order (pipelining
// works). The body of an echo is buffered up to MaxEcho; larger gets 413.
package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
)

// Config sets the default response.
type Config struct {
	Size    int           // response body bytes for non-echo requests
	Delay   time.Duration // before each response
	MaxEcho int           // echo body limit; 0: 64 MiB
}

// Server answers on a listener until Close.
type Server struct {
	cfg  Config
	body []byte // Size bytes of 'x'
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Serve starts answering on ln; it returns at once.
func Serve(ln net.Listener, cfg Config) *Server {
	if cfg.MaxEcho <= 0 {
		cfg.MaxEcho = 64 << 20
	}
	s := &Server{cfg: cfg, body: bytes.Repeat([]byte{'x'}, cfg.Size), ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and waits for them.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				slog.Error("upstream: accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			newConn(s, c).serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// conn is one client connection; it is the parser's callbacks.
type conn struct {
	s    *Server
	c    net.Conn
	p    *h1.Parser
	w    *bufio.Writer
	buf  []byte
	head []byte // scratch for response heads
	fill []byte // 'x' bytes for ?size= beyond Config.Size, grown on demand

	// the request being parsed
	echo, close bool
	minor       int
	size        int
	delay       time.Duration
	bad         string // a 400 reason found in the query
	tooBig      bool
	body        []byte
	done        bool
}

func newConn(s *Server, c net.Conn) *conn {
	cn := &conn{s: s, c: c, w: bufio.NewWriterSize(c, 64<<10), buf: make([]byte, 0, 64<<10)}
	cn.p = h1.NewRequestParser(h1.DefaultLimits, cn)
	return cn
}

func (cn *conn) OnHead(h *h1.Head) error {
	cn.close, cn.minor = h.Close, h.Minor
	cn.size, cn.delay, cn.bad, cn.tooBig, cn.body = cn.s.cfg.Size, cn.s.cfg.Delay, "", false, cn.body[:0]
	path, query, _ := bytes.Cut(h.Target, []byte{'?'})
	cn.echo = bytes.Equal(path, []byte("/echo"))
	// The query is read in place (no map, no allocation): size and delay
	// never need percent-escaping, and other parameters are ignored.
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = bytes.Cut(query, []byte{'&'})
		k, v, _ := bytes.Cut(pair, []byte{'='})
		if len(v) == 0 {
			continue // an empty value leaves the default, as url.Values.Get would
		}
		switch string(k) {
		case "size":
			n, ok := parseSize(v)
			if !ok {
				cn.bad = "bad size"
			}
			cn.size = n
		case "delay":
			d, err := time.ParseDuration(string(v))
			if err != nil || d < 0 || d > time.Minute {
				cn.bad = "bad delay"
			}
			cn.delay = d
		}
	}
	return nil
}

func (cn *conn) OnBody(p []byte) error {
	if !cn.echo || cn.tooBig {
		return nil
	}
	if len(cn.body)+len(p) > cn.s.cfg.MaxEcho {
		cn.tooBig, cn.body = true, cn.body[:0]
		return nil
	}
	cn.body = append(cn.body, p...)
	return nil
}

func (cn *conn) OnTrailers(*protocol.Headers) error { return nil }
func (cn *conn) OnComplete() error                  { cn.done = true; return nil }

func (cn *conn) serve() {
	for {
		if len(cn.buf) == cap(cn.buf) {
			cn.reply(431, "head too large", nil, true)
			return
		}
		n, err := cn.c.Read(cn.buf[len(cn.buf):cap(cn.buf)])
		cn.buf = cn.buf[:len(cn.buf)+n]
		for len(cn.buf) > 0 {
			used, perr := cn.p.Parse(cn.buf)
			cn.buf = cn.buf[:copy(cn.buf, cn.buf[used:])]
			if perr != nil {
				status, reason := 400, perr.Error()
				var pe *protocol.Error
				if errors.As(perr, &pe) {
					status, reason = pe.Status, pe.Reason
				}
				cn.reply(status, reason, nil, true)
				return
			}
			if !cn.done {
				break
			}
			if !cn.respond() {
				return
			}
			cn.done = false
			cn.p.Reset()
		}
		if err := cn.w.Flush(); err != nil {
			return
		}
		if err != nil {
			return // EOF or reset: nothing half-parsed is answered
		}
	}
}

// respond answers the parsed request; false means close the connection.
func (cn *conn) respond() bool {
	keep := !cn.close
	switch {
	case cn.bad != "":
		cn.reply(400, cn.bad, nil, true)
		return false
	case cn.tooBig:
		cn.reply(413, "echo body over "+strconv.Itoa(cn.s.cfg.MaxEcho)+" bytes", nil, true)
		return false
	}
	if cn.delay > 0 {
		cn.w.Flush() // earlier pipelined answers are not held behind the delay
		time.Sleep(cn.delay)
	}
	body := cn.body
	if !cn.echo {
		body = cn.fixed(cn.size)
	}
	return cn.reply(200, "", body, !keep) && keep
}

// parseSize reads a decimal byte count of at most 1 GiB.
func parseSize(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 1<<30
}

// fixed returns n bytes of body without allocating per request: a prefix
// of the server's default body, or of this connection's larger fill.
func (cn *conn) fixed(n int) []byte {
	if n <= len(cn.s.body) {
		return cn.s.body[:n]
	}
	if len(cn.fill) < n {
		cn.fill = bytes.Repeat([]byte{'x'}, n)
	}
	return cn.fill[:n]
}

// reply writes a response (reason as the body of an error); it reports
// whether the write succeeded.
func (cn *conn) reply(status int, reason string, body []byte, closing bool) bool {
	if status != 200 {
		body = []byte(fmt.Sprintf("upstream: %s\n", reason))
	}
	h := append(cn.head[:0], "HTTP/1.1 "...)
	h = strconv.AppendInt(h, int64(status), 10)
	h = append(append(append(h, ' '), statusText(status)...), "\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(body)), 10)
	cn.head = append(h, "\r\n"...)
	cn.w.Write(cn.head)
	if closing {
		cn.w.WriteString("Connection: close\r\n")
	} else if cn.minor == 0 {
		cn.w.WriteString("Connection: keep-alive\r\n")
	}
	cn.w.WriteString("\r\n")
	cn.w.Write(body)
	if closing {
		return cn.w.Flush() == nil
	}
	return true
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

var _ h1.Callbacks = (*conn)(nil)
var _ io.Closer = (*Server)(nil)
