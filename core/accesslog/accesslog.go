// Package accesslog writes one line per request in an Envoy-style format,
// off the hot path: the request side fills a pooled Entry and hands it to a
// bounded queue; one goroutine formats and writes. When the queue is full
// the entry is dropped and counted — traffic never waits for the disk.
package accesslog

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultFormat is Envoy's default access log format.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// TCPDefaultFormat is a tcp_proxy listener's format when none is given: one
// line per connection.
const TCPDefaultFormat = `[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESPONSE_FLAGS% %CONNECTION_TERMINATION_DETAILS%` + "\n"

type opKind uint8

const (
	opLiteral opKind = iota
	opStartTime
	opReq // a request header, or :METHOD / :PATH / :AUTHORITY
	opProtocol
	opResponseCode
	opResponseFlags
	opBytesReceived
	opBytesSent
	opDuration
	opUpstreamHost
	opUpstreamCluster
	opRemoteAddr
	opTermination
	opTraceID
)

var operators = map[string]opKind{
	"START_TIME": opStartTime, "PROTOCOL": opProtocol, "RESPONSE_CODE": opResponseCode,
	"RESPONSE_FLAGS": opResponseFlags, "BYTES_RECEIVED": opBytesReceived, "BYTES_SENT": opBytesSent,
	"DURATION": opDuration, "UPSTREAM_HOST": opUpstreamHost, "UPSTREAM_CLUSTER": opUpstreamCluster,
	"DOWNSTREAM_REMOTE_ADDRESS": opRemoteAddr, "CONNECTION_TERMINATION_DETAILS": opTermination,
	"TRACE_ID": opTraceID,
}

type segment struct {
	kind opKind
	text string // literal text, or the header index's name
	hdr  int    // index into Entry.Headers for opReq on a header
}

// Format is a parsed format string.
type Format struct {
	segs []segment
	// Headers lists the request headers the format uses (lower case); the
	// request side copies just these into the Entry.
	Headers []string
}

// ParseFormat parses a format; a newline is appended when it does not end
// with one (one entry, one line). It understands Envoy-style command operators: %START_TIME%,
// %REQ(NAME)% (with :METHOD, :PATH, :AUTHORITY), %PROTOCOL%,
// %RESPONSE_CODE%, %RESPONSE_FLAGS%, %BYTES_RECEIVED%, %BYTES_SENT%,
// %DURATION% (ms), %UPSTREAM_HOST%, %UPSTREAM_CLUSTER%,
// %DOWNSTREAM_REMOTE_ADDRESS%, %CONNECTION_TERMINATION_DETAILS% (tcp_proxy),
// %TRACE_ID% (with tracing);
// "%%" is a literal percent.
func ParseFormat(s string) (*Format, error) {
	f := &Format{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.segs = append(f.segs, segment{kind: opLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '%')
		if end < 0 {
			return nil, fmt.Errorf("accesslog: unterminated operator at offset %d", i)
		}
		name := s[i+1 : i+1+end]
		i += end + 1
		flush()
		if strings.HasPrefix(name, "REQ(") && strings.HasSuffix(name, ")") {
			h := strings.ToLower(name[4 : len(name)-1])
			if h == "" {
				return nil, fmt.Errorf("accesslog: empty header in %%%s%%", name)
			}
			seg := segment{kind: opReq, text: h, hdr: -1}
			if h[0] != ':' {
				seg.hdr = len(f.Headers)
				f.Headers = append(f.Headers, h)
			} else if h != ":method" && h != ":path" && h != ":authority" {
				return nil, fmt.Errorf("accesslog: unknown pseudo-header %q", h)
			}
			f.segs = append(f.segs, seg)
			continue
		}
		k, ok := operators[name]
		if !ok {
			return nil, fmt.Errorf("accesslog: unknown operator %%%s%%", name)
		}
		f.segs = append(f.segs, segment{kind: k})
	}
	if !strings.HasSuffix(lit.String(), "\n") {
		lit.WriteByte('\n')
	}
	flush()
	return f, nil
}

// Entry is one request's record. Get one from a Logger, fill it, Log it.
type Entry struct {
	Start         time.Time
	Method, Path  []byte
	Authority     []byte
	Major         int
	Minor         int
	Status        int
	Flags         string // Envoy response flags, e.g. "UF", "" for none
	BytesReceived int64
	BytesSent     int64
	Duration      time.Duration
	UpstreamHost  string
	Cluster       string
	RemoteAddr    string
	Termination   string   // why a tcp_proxy connection ended
	TraceID       [16]byte // the request's trace (zero: none)
	Headers       [][]byte // values of Format.Headers, in order; nil if absent
	arena         []byte
}

// SetRequest copies what the format needs from the request while its bytes
// are valid (they alias a read buffer).
func (e *Entry) SetRequest(method, path, authority []byte, major, minor int, get func(name string) []byte, names []string) {
	n := len(method) + len(path) + len(authority)
	vals := e.Headers[:0]
	for _, name := range names {
		v := get(name)
		n += len(v)
		vals = append(vals, v)
	}
	if cap(e.arena) < n {
		e.arena = make([]byte, 0, n)
	}
	a := e.arena[:0]
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		s := len(a)
		a = append(a, b...)
		return a[s:len(a):len(a)]
	}
	e.Method, e.Path, e.Authority, e.Major, e.Minor = cp(method), cp(path), cp(authority), major, minor
	for i := range vals {
		vals[i] = cp(vals[i])
	}
	e.Headers, e.arena = vals, a
}

// Logger owns a sink and its writer goroutine.
type Logger struct {
	f       *Format
	w       *bufio.Writer
	closer  io.Closer
	ch      chan *Entry
	done    chan struct{}
	pool    sync.Pool
	written atomic.Uint64
	dropped atomic.Uint64
	once    sync.Once
}

// Open starts a logger writing to path ("stdout", "stderr" or a file,
// appended to) with a queue of size entries.
func Open(path string, f *Format, size int) (*Logger, error) {
	var w io.Writer
	var closer io.Closer
	switch path {
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		w, closer = file, file
	}
	return New(w, closer, f, size), nil
}

// New starts a logger over w (closer, if not nil, is closed by Close).
func New(w io.Writer, closer io.Closer, f *Format, size int) *Logger {
	if size <= 0 {
		size = 1024
	}
	l := &Logger{f: f, w: bufio.NewWriterSize(w, 64<<10), closer: closer, ch: make(chan *Entry, size), done: make(chan struct{})}
	l.pool.New = func() any { return &Entry{} }
	go l.run()
	return l
}

// Format is the logger's parsed format.
func (l *Logger) Format() *Format { return l.f }

// Get returns an empty entry.
func (l *Logger) Get() *Entry { return l.pool.Get().(*Entry) }

// Log queues e (ownership passes to the logger) or drops it if the queue is
// full. It never blocks.
func (l *Logger) Log(e *Entry) {
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
		l.put(e)
	}
}

func (l *Logger) put(e *Entry) {
	hdrs, arena := e.Headers[:0], e.arena[:0]
	*e = Entry{Headers: hdrs, arena: arena}
	l.pool.Put(e)
}

// Written and Dropped count entries.
func (l *Logger) Written() uint64 { return l.written.Load() }
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Close writes what is queued and stops the writer. The queue is never
// closed, so a Log racing with Close (a connection finishing during
// shutdown) is dropped, never a panic.
func (l *Logger) Close() error {
	l.once.Do(func() { l.ch <- nil })
	<-l.done
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

func (l *Logger) run() {
	defer close(l.done)
	var line []byte
	for e := range l.ch {
		if e == nil {
			break // Close
		}
		line = l.f.Append(line[:0], e)
		l.w.Write(line)
		l.written.Add(1)
		l.put(e)
		if len(l.ch) == 0 {
			l.w.Flush()
		}
	}
	l.w.Flush()
}

func dash(b []byte, v []byte) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	return append(b, v...)
}

// Append formats e onto b.
func (f *Format) Append(b []byte, e *Entry) []byte {
	for _, s := range f.segs {
		switch s.kind {
		case opLiteral:
			b = append(b, s.text...)
		case opStartTime:
			b = e.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		case opReq:
			switch {
			case s.hdr >= 0 && s.hdr < len(e.Headers):
				b = dash(b, e.Headers[s.hdr])
			case s.text == ":method":
				b = dash(b, e.Method)
			case s.text == ":path":
				b = dash(b, e.Path)
			case s.text == ":authority":
				b = dash(b, e.Authority)
			default:
				b = append(b, '-')
			}
		case opProtocol:
			if e.Major == 2 {
				b = append(b, "HTTP/2"...)
				break
			}
			b = append(b, "HTTP/1."...)
			b = strconv.AppendInt(b, int64(e.Minor), 10)
		case opResponseCode:
			b = strconv.AppendInt(b, int64(e.Status), 10)
		case opResponseFlags:
			b = dash(b, []byte(e.Flags))
		case opBytesReceived:
			b = strconv.AppendInt(b, e.BytesReceived, 10)
		case opBytesSent:
			b = strconv.AppendInt(b, e.BytesSent, 10)
		case opDuration:
			b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
		case opUpstreamHost:
			b = dash(b, []byte(e.UpstreamHost))
		case opUpstreamCluster:
			b = dash(b, []byte(e.Cluster))
		case opRemoteAddr:
			b = dash(b, []byte(e.RemoteAddr))
		case opTermination:
			b = dash(b, []byte(e.Termination))
		case opTraceID:
			if e.TraceID == [16]byte{} {
				b = append(b, '-')
				break
			}
			b = hex.AppendEncode(b, e.TraceID[:])
		}
	}
	return b
}
