//go:build linux

package http1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	h1 "github.com/proxylab/proxylab/core/protocol/http1"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/foundation/timer"
	"github.com/proxylab/proxylab/transport"
)

// handedConn is what a Listener.Migrate hand-off received.
type handedConn struct {
	fd   int
	data string
}

func migrateSettings() *ServerSettings {
	return &ServerSettings{Limits: h1.DefaultLimits, Timers: timer.New(10 * time.Millisecond),
		IdleTimeout: 30 * time.Second, HighWatermark: 1 << 20, Linger: time.Second}
}

// TestMigrate: a connection between requests is handed over with the bytes
// not parsed yet, and a second ServerConn over the adopted socket serves
// the client's next request on the same connection; a half-closed one is
// drained instead.
func TestMigrate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		before   string // sent after the first exchange, before the hand-over
		after    string // sent after the hand-over
		moves    bool
		carried  string
		wantPath string
		halfOpen bool
	}{
		{name: "idle", after: "GET /next HTTP/1.1\r\nHost: h\r\n\r\n", moves: true, wantPath: "GET /next"},
		{name: "half a request line", before: "GET /spl", after: "it HTTP/1.1\r\nHost: h\r\n\r\n", moves: true, carried: "GET /spl", wantPath: "GET /split"},
		// A request in flight from a client that half-closed: it cannot
		// move (the connection closes after the response), so it drains.
		{name: "half-closed with a request in flight drains", before: "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", halfOpen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := migrateSettings()
			held := make(chan stream.ResponseEncoder, 1)
			old := &app{answer: func(enc stream.ResponseEncoder, req string) {
				if strings.Contains(req, "/slow") {
					held <- enc // answered by the test, later
					return
				}
				reply(enc, req)
			}}
			tr := newTransport(t)
			l, err := network.NewListener("web", tr, "127.0.0.1:0", nil, func() ([]network.ReadFilter, []network.WriteFilter) {
				return []network.ReadFilter{NewServerConn(set, old)}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			l.Start()
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			io.WriteString(c, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
			readBody(t, br)
			io.WriteString(c, tc.before)
			if tc.halfOpen {
				c.(*net.TCPConn).CloseWrite()
			}
			time.Sleep(50 * time.Millisecond) // the old side has read it
			handed := make(chan handedConn, 1)
			moving, draining := l.Migrate(func(name string, fd int, data []byte) {
				if name != "web" {
					t.Errorf("listener %q", name)
				}
				handed <- handedConn{fd, string(data)}
			})
			if !tc.moves {
				if moving != 0 || draining != 1 {
					t.Fatalf("moving %d draining %d", moving, draining)
				}
				enc := <-held
				sess := enc.(*serverStream).sc.c
				sess.Lock()
				reply(enc, "GET /slow")
				sess.Unlock()
				resp, err := http.ReadResponse(br, nil)
				if err != nil || !resp.Close {
					t.Fatalf("the drained connection's last response: %v %v", resp, err)
				}
				io.ReadAll(resp.Body)
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("the drained connection: %v", err)
				}
				return
			}
			var h handedConn
			select {
			case h = <-handed:
			case <-time.After(5 * time.Second):
				t.Fatal("not handed over")
			}
			if moving != 1 || h.data != tc.carried {
				t.Fatalf("moving %d, carried %q, want %q", moving, h.data, tc.carried)
			}
			// The new side: another transport and ServerConn on the socket.
			nw := &app{}
			var prefix *buffer.Buf
			if h.data != "" {
				prefix = buffer.From([]byte(h.data))
			}
			tc2, err := newTransport(t).(transport.ConnAdopter).AdoptConn(h.fd, prefix)
			if err != nil {
				t.Fatal(err)
			}
			nc := network.NewConn(tc2, []network.ReadFilter{NewServerConn(set, nw)}, nil)
			nc.Start()
			defer nc.Close()
			io.WriteString(c, tc.after)
			if body := readBody(t, br); len(body) < len(tc.wantPath) || body[:len(tc.wantPath)] != tc.wantPath {
				t.Fatalf("response %q, want %q", body, tc.wantPath)
			}
			if got := old.requests(); len(got) != 1 {
				t.Fatalf("the old side served %v", got)
			}
		})
	}
}

func reply(enc stream.ResponseEncoder, req string) {
	enc.EncodeHead(&stream.Head{Status: 200, ContentLength: int64(len(req))}, false)
	enc.EncodeData([]byte(req), true)
}

func readBody(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatalf("response asks to close: %q", b)
	}
	return string(b)
}
