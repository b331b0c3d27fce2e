// Package loadgen is proxybench's own load generator: HTTP/1.1 keep-alive,
// HTTP/2 (several streams per connection) or raw TCP echo, in cleartext or
// over TLS, closed loop (each connection sends as soon as it has its
// answer: maximum throughput) or open loop at a constant rate with
// coordinated omission avoided — latency is measured from when a request was
// due, not from when a stalled connection finally sent it (as wrk2 does).
package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/bench/hdr"
	"github.com/proxylab/proxylab/bench/upstream"
	"github.com/proxylab/proxylab/core/protocol"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/offload/gm/tlcp"
)

// Config describes one load run.
type Config struct {
	Target      string // host:port
	Protocol    string // "http1", "http2" or "tcp" (echo)
	Connections int    // concurrent connections
	// Streams is the requests each HTTP/2 connection keeps in flight
	// (1 by default); ignored for the other protocols.
	Streams int
	// TLS speaks TLS to the target (certificates are not verified: it is
	// a benchmark), with ALPN h2 for http2 and http/1.1 otherwise.
	TLS bool
	// Engine, with TLS: "go" (crypto/tls; the default) or "tlcp"
	// (offload/gm/tlcp's client, offering TLCPSuite or all four).
	Engine    string
	TLCPSuite uint16
	// Curves, with the go engine: the key-exchange groups offered, in
	// order (the first gets a key share); nil: crypto/tls's default.
	Curves []tls.CurveID
	// Resume offers the last session on each new connection (Go TLS
	// tickets, TLCP session IDs); otherwise every handshake is full.
	Resume   bool
	Duration time.Duration // how long to send
	// Rate is the total requests per second for open-loop load; 0 means
	// closed loop.
	Rate float64
	// HTTP: the request line's path and Host; RequestBody bytes are sent
	// as a Content-Length body.
	Path        string
	Host        string
	RequestBody int
	// TCP echo: bytes per round trip.
	EchoSize int
	Timeout  time.Duration // per request; 0: 10s

	clients *tlsClients // shared by the run's connections (session caches)
}

// tlsClients are the client configurations of one run.
type tlsClients struct {
	tls     *tls.Config
	tlcp    *tlcp.Config
	tickets *ticketCache // Go TLS with Resume
}

// ticketCache is the Go TLS session cache of a resuming run; it notes
// whether a session (a TLS 1.3 ticket) was ever stored.
type ticketCache struct {
	tls.ClientSessionCache
	have atomic.Bool
}

func (t *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	t.ClientSessionCache.Put(key, cs)
	if cs != nil {
		t.have.Store(true)
	}
}

func newTLSClients(cfg Config) (*tlsClients, error) {
	switch cfg.Engine {
	case "", "go", "tlcp":
	default:
		return nil, fmt.Errorf("loadgen: unknown engine %q (go, tlcp)", cfg.Engine)
	}
	c := &tlsClients{
		tls:  &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", CurvePreferences: cfg.Curves},
		tlcp: &tlcp.Config{InsecureSkipVerify: true, ServerName: "localhost"},
	}
	if cfg.TLCPSuite != 0 {
		c.tlcp.CipherSuites = []uint16{cfg.TLCPSuite}
	}
	if cfg.Resume {
		c.tickets = &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
		c.tls.ClientSessionCache = c.tickets
		c.tlcp.SessionCache = tlcp.NewSessionCache(1, time.Hour)
	}
	return c, nil
}

// Result is what a run measured.
type Result struct {
	Requests, Errors uint64
	Elapsed          time.Duration
	Latency          *hdr.Histogram
	FirstError       error
}

// RPS is the achieved throughput.
func (r *Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Run generates load until cfg.Duration passes or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Connections <= 0 {
		return nil, errors.New("loadgen: connections must be > 0")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	clients, err := newTLSClients(cfg)
	if err != nil {
		return nil, err
	}
	cfg.clients = clients
	workers := cfg.Connections
	var newSession func(i int) sessionFactory
	switch cfg.Protocol {
	case "handshake":
		if !cfg.TLS {
			return nil, errors.New("loadgen: the handshake protocol needs -tls")
		}
		newSession = func(int) sessionFactory {
			return func(ctx context.Context) (session, error) { return handshaker{ctx: ctx, cfg: cfg}, nil }
		}
	case "http1", "":
		req := buildRequest(cfg)
		newSession = func(int) sessionFactory {
			return dialing(cfg, func(c net.Conn) session { return newHTTPClient(c, req) })
		}
	case "tcp":
		if cfg.EchoSize <= 0 {
			cfg.EchoSize = 64
		}
		payload := bytes.Repeat([]byte{'x'}, cfg.EchoSize)
		newSession = func(int) sessionFactory {
			return dialing(cfg, func(c net.Conn) session {
				return &echoClient{c: c, payload: payload, buf: make([]byte, cfg.EchoSize)}
			})
		}
	case "bolt", "dubbo":
		codec := upstream.RPCCodec(cfg.Protocol)
		newSession = func(int) sessionFactory {
			return dialing(cfg, func(c net.Conn) session { return newRPCClient(c, codec, cfg) })
		}
	case "http2":
		streams := max(cfg.Streams, 1)
		workers = cfg.Connections * streams
		shared := make([]*h2Conn, cfg.Connections)
		for i := range shared {
			shared[i] = &h2Conn{cfg: cfg}
		}
		newSession = func(i int) sessionFactory { return shared[i/streams].session }
	default:
		return nil, fmt.Errorf("loadgen: unknown protocol %q (http1, http2, tcp, bolt, dubbo, handshake)", cfg.Protocol)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	res := &Result{Latency: hdr.New()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := worker{cfg: cfg, hist: hdr.New(), newSession: newSession(i)}
			if cfg.Rate > 0 {
				// Each worker sends every interval, staggered.
				w.interval = time.Duration(float64(workers) / cfg.Rate * float64(time.Second))
				w.next = start.Add(w.interval * time.Duration(i) / time.Duration(workers))
			}
			w.run(ctx)
			mu.Lock()
			res.Requests += w.ok
			res.Errors += w.errs
			if res.FirstError == nil {
				res.FirstError = w.firstErr
			}
			res.Latency.Merge(w.hist)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, nil
}

// session does request/response exchanges, one at a time, until one
// fails; then it is closed and the worker opens another.
type session interface {
	exchange() error
	Close() error
}

// sessionFactory opens a session (a connection, or a stream slot on a
// shared HTTP/2 connection).
type sessionFactory func(ctx context.Context) (session, error)

// dialing opens a connection per session, with TLS when configured; every
// exchange has cfg.Timeout.
func dialing(cfg Config, wrap func(net.Conn) session) sessionFactory {
	return func(ctx context.Context) (session, error) {
		c, err := dial(ctx, cfg, "http/1.1")
		if err != nil {
			return nil, err
		}
		return deadlined{session: wrap(c), c: c, timeout: cfg.Timeout}, nil
	}
}

func dial(ctx context.Context, cfg Config, alpn string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: cfg.Timeout}).DialContext(ctx, "tcp", cfg.Target)
	if err != nil || !cfg.TLS {
		return c, err
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Engine == "tlcp" {
		tc := tlcp.Client(c, cfg.clients.tlcp)
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("loadgen: TLCP: %w", err)
		}
		return tc, nil
	}
	tcfg := cfg.clients.tls.Clone()
	tcfg.NextProtos = []string{alpn}
	tc := tls.Client(c, tcfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("loadgen: TLS: %w", err)
	}
	return tc, nil
}

// handshaker's exchange is one connection: dial, handshake, close.
type handshaker struct {
	ctx context.Context
	cfg Config
}

// With Resume over Go TLS, a TLS 1.3 ticket arrives after the handshake
// and crypto/tls takes it only on a Read: until the cache holds one, each
// connection waits briefly for it. Once it does, every handshake must
// resume (the ticket is reused) or the exchange fails, so a "resumed"
// figure never silently measures full handshakes.
func (h handshaker) exchange() error {
	tickets := h.cfg.clients.tickets
	hadTicket := tickets != nil && tickets.have.Load()
	c, err := dial(h.ctx, h.cfg, "http/1.1")
	if err != nil {
		return err
	}
	defer c.Close()
	tc, ok := c.(*tls.Conn)
	if !ok || tickets == nil {
		return nil
	}
	if hadTicket && !tc.ConnectionState().DidResume {
		return errors.New("loadgen: handshake not resumed with the cached ticket")
	}
	if !tickets.have.Load() {
		tc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		tc.Read(make([]byte, 1))
	}
	return nil
}

func (handshaker) Close() error { return nil }

// deadlined bounds each exchange of a connection's session.
type deadlined struct {
	session
	c       net.Conn
	timeout time.Duration
}

func (d deadlined) exchange() error {
	d.c.SetDeadline(time.Now().Add(d.timeout))
	return d.session.exchange()
}

type worker struct {
	cfg        Config
	hist       *hdr.Histogram
	newSession sessionFactory
	interval   time.Duration // open loop: time between this connection's requests
	next       time.Time     // open loop: when the next request is due
	ok, errs   uint64
	firstErr   error
}

func (w *worker) fail(err error) {
	w.errs++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

func (w *worker) run(ctx context.Context) {
	var cl session
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for !over(ctx) {
		due := time.Now()
		if w.interval > 0 {
			due = w.next
			w.next = w.next.Add(w.interval)
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		if cl == nil {
			c, err := w.newSession(ctx)
			if err != nil {
				if !over(ctx) {
					w.fail(err)
				}
				continue
			}
			cl = c
		}
		if err := cl.exchange(); err != nil {
			if !over(ctx) {
				w.fail(err)
			}
			cl.Close()
			cl = nil
			continue
		}
		// From when it was due: a request delayed by a stall counts the
		// stall (coordinated omission avoided).
		w.hist.Record(time.Since(due))
		w.ok++
	}
}

// over says the run has ended: ctx is done, or its deadline has passed
// (a dial bounded by that deadline fails with a timeout a moment before
// ctx.Err reports it, and must not count as an error).
func over(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func buildRequest(cfg Config) []byte {
	path, host := cfg.Path, cfg.Host
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = cfg.Target
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: proxybench\r\n", map[bool]string{true: "POST", false: "GET"}[cfg.RequestBody > 0], path, host)
	if cfg.RequestBody > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", cfg.RequestBody)
		b.Write(bytes.Repeat([]byte{'b'}, cfg.RequestBody))
	} else {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// httpClient sends a fixed request and reads one response with proxylab's
// own HTTP/1 parser (Content-Length, chunked and close-delimited bodies).
type httpClient struct {
	c      net.Conn
	req    []byte
	p      *h1.Parser
	buf    []byte
	status int
	done   bool
}

func (cl *httpClient) Close() error { return cl.c.Close() }

func newHTTPClient(c net.Conn, req []byte) *httpClient {
	cl := &httpClient{c: c, req: req, buf: make([]byte, 0, 64<<10)}
	cl.p = h1.NewResponseParser(h1.DefaultLimits, cl)
	return cl
}

func (cl *httpClient) OnHead(h *h1.Head) error {
	cl.status = h.Status
	return nil
}
func (cl *httpClient) OnBody([]byte) error                { return nil }
func (cl *httpClient) OnTrailers(*protocol.Headers) error { return nil }
func (cl *httpClient) OnComplete() error                  { cl.done = true; return nil }

var errStatus = errors.New("loadgen: non-2xx response")

func (cl *httpClient) exchange() error {
	if _, err := cl.c.Write(cl.req); err != nil {
		return err
	}
	cl.p.Reset()
	cl.done = false
	for !cl.done {
		if len(cl.buf) == cap(cl.buf) {
			return errors.New("loadgen: response head too large")
		}
		n, err := cl.c.Read(cl.buf[len(cl.buf):cap(cl.buf)])
		cl.buf = cl.buf[:len(cl.buf)+n]
		if n > 0 {
			used, perr := cl.p.Parse(cl.buf)
			if perr != nil {
				return perr
			}
			cl.buf = cl.buf[:copy(cl.buf, cl.buf[used:])]
		}
		if err != nil {
			if err == io.EOF && cl.p.EOF() == nil && cl.done {
				break
			}
			return err
		}
	}
	if cl.status < 200 || cl.status > 299 {
		return fmt.Errorf("%w: %d", errStatus, cl.status)
	}
	return nil
}

// echoClient writes a payload and reads it back.
type echoClient struct {
	c            net.Conn
	payload, buf []byte
}

func (e *echoClient) Close() error { return e.c.Close() }

func (e *echoClient) exchange() error {
	if _, err := e.c.Write(e.payload); err != nil {
		return err
	}
	_, err := io.ReadFull(e.c, e.buf)
	return err
}
