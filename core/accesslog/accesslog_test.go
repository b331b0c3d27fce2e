package accesslog

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	f, err := ParseFormat(`%START_TIME% "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(User-Agent)%" "%REQ(x-missing)%" %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS% 100%%` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.Headers, ",") != "user-agent,x-missing" {
		t.Fatalf("headers %v", f.Headers)
	}
	e := &Entry{Start: time.Date(2026, 11, 21, 6, 0, 0, 5e6, time.UTC), Status: 503, Flags: "UF", BytesReceived: 3, BytesSent: 42,
		Duration: 1500 * time.Millisecond, Cluster: "up", RemoteAddr: "127.0.0.1:5555"}
	hdr := map[string]string{"user-agent": "curl/8"}
	e.SetRequest([]byte("GET"), []byte("/a?b"), []byte("h"), 1, 1, func(n string) []byte {
		if v, ok := hdr[n]; ok {
			return []byte(v)
		}
		return nil
	}, f.Headers)
	got := string(f.Append(nil, e))
	want := `2026-11-21T06:00:00.005Z "GET /a?b HTTP/1.1" 503 UF 3 42 1500 "curl/8" "-" - up 127.0.0.1:5555 100%` + "\n"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	for _, bad := range []string{"%NOPE%", "%REQ()%", "%REQ(:scheme)%", "100%"} {
		if _, err := ParseFormat(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

type slowWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	gate chan struct{}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestNeverBlocksDropsCounted: with the writer stuck, Log returns at once and
// counts what did not fit.
func TestNeverBlocksDropsCounted(t *testing.T) {
	// Lines longer than the writer's 64 KiB buffer reach the stuck writer
	// at once, so the writer blocks on the first entry.
	f, _ := ParseFormat(strings.Repeat("x", 70<<10) + " %RESPONSE_CODE%\n")
	w := &slowWriter{gate: make(chan struct{})}
	l := New(w, nil, f, 4)
	start := time.Now()
	for i := 0; i < 100; i++ {
		e := l.Get()
		e.Status = 200
		l.Log(e)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Fatal("Log blocked")
	}
	close(w.gate)
	l.Close()
	// The writer holds one entry besides the 4 queued ones.
	if l.Written()+l.Dropped() != 100 || l.Written() > 5 || l.Written() < 4 {
		t.Fatalf("written %d dropped %d", l.Written(), l.Dropped())
	}
	if lines := strings.Count(w.buf.String(), " 200\n"); uint64(lines) != l.Written() {
		t.Fatalf("%d lines for %d written", lines, l.Written())
	}
}

func TestLogAfterCloseIsDropped(t *testing.T) {
	f, _ := ParseFormat("x\n")
	var buf bytes.Buffer
	l := New(&buf, nil, f, 2)
	l.Close()
	for i := 0; i < 10; i++ {
		l.Log(l.Get()) // must not panic or block
	}
	l.Close()
	if l.Written() != 0 {
		t.Fatalf("written after close: %d", l.Written())
	}
}

func TestFormatTCPAndTrace(t *testing.T) {
	f, err := ParseFormat(TCPDefaultFormat + "%TRACE_ID%")
	if err != nil {
		t.Fatal(err)
	}
	e := &Entry{Start: time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC), Flags: "UF", BytesReceived: 7, Cluster: "db",
		RemoteAddr: "127.0.0.1:1", Termination: "upstream_connect_failed", TraceID: [16]byte{0xab, 15: 1}}
	want := "[2026-11-21T06:00:00.000Z] 127.0.0.1:1 db - 7 0 0 UF upstream_connect_failed\nab000000000000000000000000000001\n"
	if got := string(f.Append(nil, e)); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	e.TraceID = [16]byte{}
	if got := string(f.Append(nil, e)); !strings.HasSuffix(got, "\n-\n") {
		t.Fatalf("no trace: %q", got)
	}
}
