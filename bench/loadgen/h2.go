package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// h2Conn is one HTTP/2 connection shared by the workers of its streams:
// each worker keeps one request in flight on it. A failed connection is
// replaced by the next worker that needs it.
type h2Conn struct {
	cfg Config
	mu  sync.Mutex
	cc  *http2.ClientConn
	tr  http2.Transport
}

func (h *h2Conn) get(ctx context.Context) (*http2.ClientConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cc != nil && h.cc.CanTakeNewRequest() {
		return h.cc, nil
	}
	c, err := dial(ctx, h.cfg, "h2")
	if err != nil {
		return nil, err
	}
	cc, err := h.tr.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("loadgen: h2: %w", err)
	}
	h.cc = cc
	return cc, nil
}

// drop forgets cc after it failed (other workers may still be using it).
func (h *h2Conn) drop(cc *http2.ClientConn) {
	h.mu.Lock()
	if h.cc == cc {
		h.cc = nil
		cc.Close()
	}
	h.mu.Unlock()
}

func (h *h2Conn) session(ctx context.Context) (session, error) {
	cc, err := h.get(ctx)
	if err != nil {
		return nil, err
	}
	return &h2Stream{h: h, cc: cc}, nil
}

// h2Stream is a worker's slot on the shared connection.
type h2Stream struct {
	h    *h2Conn
	cc   *http2.ClientConn
	body []byte
}

func (s *h2Stream) exchange() error {
	cfg := s.h.cfg
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
	}
	path := cfg.Path
	if path == "" {
		path = "/"
	}
	method := http.MethodGet
	var body io.Reader
	if cfg.RequestBody > 0 {
		if s.body == nil {
			s.body = bytes.Repeat([]byte{'b'}, cfg.RequestBody)
		}
		method, body = http.MethodPost, bytes.NewReader(s.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+cfg.Target+path, body)
	if err != nil {
		return err
	}
	if cfg.Host != "" {
		req.Host = cfg.Host
	}
	resp, err := s.cc.RoundTrip(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %d", errStatus, resp.StatusCode)
	}
	return nil
}

// Close drops the connection if it is broken (the next session redials).
func (s *h2Stream) Close() error {
	if !s.cc.CanTakeNewRequest() {
		s.h.drop(s.cc)
	}
	return nil
}

var _ session = (*h2Stream)(nil)
