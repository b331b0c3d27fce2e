package http2

import (
	"bytes"

	"golang.org/x/net/http2/hpack"
)

// HeaderField is one field of a header list (RFC 7541 §1.3).
type HeaderField = hpack.HeaderField

// Encoder encodes header lists into header blocks with one connection's
// outbound HPACK context (RFC 7541); it takes any name and value.
type Encoder struct {
	enc *hpack.Encoder
	buf bytes.Buffer
}

// NewEncoder returns an encoder with the default 4096-octet table.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.Init()
	return e
}

// Init readies an Encoder held by value (it must not move afterwards).
func (e *Encoder) Init() { e.enc = hpack.NewEncoder(&e.buf) }

// Encode returns the header block of fields; it is valid until the next
// Encode.
func (e *Encoder) Encode(fields []HeaderField) []byte {
	e.buf.Reset()
	for _, f := range fields {
		e.enc.WriteField(f)
	}
	return e.buf.Bytes()
}

// SetMaxDynamicTableSize bounds the table to what the peer's
// SETTINGS_HEADER_TABLE_SIZE allows (the next block says so).
func (e *Encoder) SetMaxDynamicTableSize(v uint32) { e.enc.SetMaxDynamicTableSize(v) }

// Decoder decodes header blocks with one connection's inbound HPACK
// context and bounds the decoded list (RFC 9113 §6.5.2: name + value + 32
// octets per field). A list over the bound is still decoded to the end,
// keeping the context in step, but its fields past the bound are dropped
// and Decode reports it, so the caller can answer it (431, reset).
type Decoder struct {
	dec     *hpack.Decoder
	maxList uint32
	fields  []HeaderField
	size    uint32
	large   bool
}

// NewDecoder returns a decoder whose dynamic table may grow to tableSize,
// whose lists are bounded by maxList and whose strings by maxString.
func NewDecoder(tableSize, maxList uint32, maxString int) *Decoder {
	d := &Decoder{}
	d.Init(tableSize, maxList, maxString)
	return d
}

// Init readies a Decoder held by value (it must not move afterwards).
func (d *Decoder) Init(tableSize, maxList uint32, maxString int) {
	d.maxList = maxList
	d.dec = hpack.NewDecoder(tableSize, d.emit)
	d.dec.SetMaxStringLength(maxString)
}

func (d *Decoder) emit(f HeaderField) {
	d.size += uint32(len(f.Name) + len(f.Value) + 32)
	if d.size > d.maxList {
		d.large = true
		return
	}
	d.fields = append(d.fields, f)
}

// Decode decodes one complete header block. The fields are valid until
// the next Decode; an error is a COMPRESSION_ERROR (RFC 9113 §4.3).
func (d *Decoder) Decode(block []byte) (fields []HeaderField, tooLarge bool, err error) {
	clear(d.fields)
	d.fields, d.size, d.large = d.fields[:0], 0, false
	if _, err := d.dec.Write(block); err != nil {
		return nil, false, &ConnError{Code: ErrCodeCompression, Reason: "HPACK: " + err.Error()}
	}
	if err := d.dec.Close(); err != nil {
		return nil, false, &ConnError{Code: ErrCodeCompression, Reason: "HPACK: " + err.Error()}
	}
	return d.fields, d.large, nil
}
