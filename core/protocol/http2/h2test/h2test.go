// Package h2test is a raw HTTP/2 peer for tests, built on the wire codec
// of core/protocol/http2: it writes any frame (valid or not), HPACK-encodes
// any field list (invalid names and values included) and reads frames
// with a deadline, decoding header blocks as they arrive so the HPACK
// context stays in step.
//
// A Conn belongs to one test goroutine for writing and one for reading.
package h2test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
)

// Conn is one raw HTTP/2 connection end. The embedded Writer writes each
// frame straight to the connection, or into the current Batch.
type Conn struct {
	http2.Writer
	// Timeout bounds each ReadFrame when the connection has read
	// deadlines (net.Conn); 10s when zero, none when negative (a reader
	// goroutine that lives as long as the connection).
	Timeout time.Duration

	rw    io.ReadWriter
	enc   *http2.Encoder
	dec   *http2.Decoder
	rd    http2.Reader
	in    []byte // read, not yet decoded
	batch bytes.Buffer
}

// New wraps rw; nothing is written yet (see Handshake, Preface).
func New(rw io.ReadWriter) *Conn {
	c := &Conn{rw: rw, enc: http2.NewEncoder(), dec: http2.NewDecoder(65536, 1<<24, 1<<24)}
	c.Writer.W = rw
	c.rd.MaxFrameSize = http2.MaxFrameLen
	return c
}

// Fields builds a field list from name, value pairs.
func Fields(kv ...string) []http2.HeaderField {
	fs := make([]http2.HeaderField, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, http2.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return fs
}

// Block HPACK-encodes fields exactly as given (a copy the caller keeps).
func (c *Conn) Block(fields []http2.HeaderField) []byte {
	return bytes.Clone(c.enc.Encode(fields))
}

// WriteRequest writes HEADERS with fields (END_STREAM when body is nil)
// and, with a body, one DATA frame ending the stream, in one write.
func (c *Conn) WriteRequest(id uint32, fields []http2.HeaderField, body []byte) error {
	return c.Batch(func() {
		c.WriteHeaders(http2.HeadersParam{StreamID: id, BlockFragment: c.Block(fields), EndStream: body == nil, EndHeaders: true})
		if body != nil {
			c.WriteData(id, true, body)
		}
	})
}

// Batch runs f with frames collected, then writes them in one Write, so
// the peer reads them together.
func (c *Conn) Batch(f func()) error {
	c.batch.Reset()
	c.Writer.W = &c.batch
	f()
	c.Writer.W = c.rw
	_, err := c.rw.Write(c.batch.Bytes())
	return err
}

// Preface writes the client connection preface (RFC 9113 §3.4).
func (c *Conn) Preface() error {
	_, err := io.WriteString(c.rw, http2.ClientPreface)
	return err
}

// Handshake writes the preface and an empty SETTINGS, reads up to the
// peer's SETTINGS and acknowledges it; it returns the peer's parameters.
func (c *Conn) Handshake(settings ...http2.Setting) (map[http2.SettingID]uint32, error) {
	if err := c.Preface(); err != nil {
		return nil, err
	}
	if err := c.WriteSettings(settings...); err != nil {
		return nil, err
	}
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == http2.FrameSettings && !f.IsAck() {
			return f.Settings(), c.WriteSettingsAck()
		}
	}
}

// Frame is a frame read, detached from the connection's buffer.
type Frame struct {
	*http2.Frame
	// Fields is the decoded header list of a HEADERS or PUSH_PROMISE
	// frame, its CONTINUATION frames joined (Data holds the whole block).
	Fields []http2.HeaderField
}

// Settings are a SETTINGS frame's parameters.
func (f *Frame) Settings() map[http2.SettingID]uint32 {
	m := map[http2.SettingID]uint32{}
	for i := range f.NumSettings() {
		s := f.Setting(i)
		m[s.ID] = s.Val
	}
	return m
}

// Get is the value of the first field named name ("" when absent).
func (f *Frame) Get(name string) string {
	for _, hf := range f.Fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// Regular is the header list without its pseudo-fields.
func (f *Frame) Regular() []http2.HeaderField {
	var r []http2.HeaderField
	for _, hf := range f.Fields {
		if len(hf.Name) == 0 || hf.Name[0] != ':' {
			r = append(r, hf)
		}
	}
	return r
}

func (f *Frame) String() string {
	switch f.Type {
	case http2.FrameRSTStream:
		return fmt.Sprintf("RST_STREAM %v on %d", f.ErrCode, f.StreamID)
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY %v last %d %q", f.ErrCode, f.LastStreamID, f.Data)
	}
	return fmt.Sprintf("%v flags 0x%x stream %d length %d", f.Type, f.Flags, f.StreamID, f.Length)
}

// ReadFrame reads the next frame, within Timeout. A header block is read
// whole (HEADERS then its CONTINUATIONs) and decoded into Fields.
func (c *Conn) ReadFrame() (*Frame, error) {
	f, err := c.readRaw()
	if err != nil {
		return nil, err
	}
	if f.Type != http2.FrameHeaders && f.Type != http2.FramePushPromise {
		return &Frame{Frame: f}, nil
	}
	for !f.HeadersEnded() {
		cf, err := c.readRaw()
		if err != nil {
			return nil, err
		}
		f.Data = append(f.Data, cf.Data...)
		f.Flags |= cf.Flags & http2.FlagHeadersEndHeaders
	}
	fields, _, err := c.dec.Decode(f.Data)
	if err != nil {
		return nil, err
	}
	return &Frame{Frame: f, Fields: append([]http2.HeaderField(nil), fields...)}, nil
}

// readRaw reads one frame as the codec's Reader decodes it.
func (c *Conn) readRaw() (*http2.Frame, error) {
	if d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error }); ok && c.Timeout >= 0 {
		t := c.Timeout
		if t == 0 {
			t = 10 * time.Second
		}
		d.SetReadDeadline(time.Now().Add(t))
	}
	for {
		f, n, err := c.rd.ReadFrame(c.in)
		if n > 0 || err != nil {
			var cp *http2.Frame
			if f != nil {
				cp = f.Clone()
			}
			c.in = c.in[:copy(c.in, c.in[n:])]
			if err != nil {
				return nil, fmt.Errorf("h2test: %w", err)
			}
			return cp, nil
		}
		var buf [32 << 10]byte
		m, err := c.rw.Read(buf[:])
		c.in = append(c.in, buf[:m]...)
		if err != nil && m == 0 {
			if errors.Is(err, io.EOF) && len(c.in) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
