package engineconn

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a log sink safe for the connection's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFailLogRateLimit(t *testing.T) {
	var out syncBuf
	now := time.Unix(1000, 0)
	f := &failLog{logger: slog.New(slog.NewTextHandler(&out, nil)), now: func() time.Time { return now }}
	for i := 0; i < failLogBurst+5; i++ {
		f.log("server", "192.0.2.1:5", "alert_40", errors.New("bad"))
	}
	if n := strings.Count(out.String(), "handshake failed"); n != failLogBurst {
		t.Fatalf("%d lines in one window, want %d", n, failLogBurst)
	}
	now = now.Add(failLogWindow)
	f.log("client", "192.0.2.2:6", "alert_42", errors.New("cert"))
	last := out.String()[strings.LastIndex(strings.TrimSpace(out.String()), "\n")+1:]
	for _, want := range []string{"side=client", "peer=192.0.2.2:6", "reason=alert_42", "suppressed=5"} {
		if !strings.Contains(last, want) {
			t.Fatalf("line %q lacks %s", last, want)
		}
	}
}

// A real failed handshake logs its peer and reason.
func TestFailedHandshakeIsLogged(t *testing.T) {
	var out syncBuf
	hs := NewInlineHandshakers()
	hs.fails.logger = slog.New(slog.NewTextHandler(&out, nil))
	addr, _ := serve(t, hs, 5*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("\x16\x03\x01\x00\x05hello"))
	io.ReadAll(c)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "peer="+c.LocalAddr().String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for %s: %q", c.LocalAddr(), out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := out.String(); !strings.Contains(s, "side=server") || !strings.Contains(s, "reason=") || !strings.Contains(s, "err=") {
		t.Fatalf("line %q", s)
	}
}
