package tlcp

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Certificate is a chain (DER, leaf first) and the private key of its
// leaf, used only through crypto.Signer (signing certificate) or
// crypto.Decrypter (encryption certificate), so an HSM can hold it.
type Certificate struct {
	Chain [][]byte
	Key   crypto.PrivateKey
}

// ClientAuth says whether a server asks for client certificates.
type ClientAuth int

const (
	NoClientCert ClientAuth = iota
	RequireAndVerifyClientCert
)

// Config configures one side.
type Config struct {
	// SignCert and EncCert are the double certificates (server: required
	// unless GetCertificates is set; client: for client authentication).
	SignCert, EncCert *Certificate
	// GetCertificates, when set on a server, chooses the double
	// certificate by the server_name the client sent ("" when none).
	GetCertificates func(serverName string) (sign, enc *Certificate)
	// CipherSuites in preference order; empty: ECC_SM4_GCM_SM3,
	// ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3.
	CipherSuites []uint16
	ClientAuth   ClientAuth
	// ClientCAs verify client certificates, RootCAs server certificates.
	ClientCAs, RootCAs *smx509.CertPool
	// ServerName is checked against the server's signing certificate.
	ServerName         string
	InsecureSkipVerify bool
	// SessionCache enables resumption by session ID: a server keeps the
	// sessions it established, a client the ones it may resume (per server
	// name). Share one per listener or cluster; nil disables resumption.
	SessionCache *SessionCache
	Rand         io.Reader
	Time         func() time.Time
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

// supported are the suites implemented. The default preference puts the
// ECC suites first: the ECDHE ones need a client certificate (the SM2 key
// agreement uses both sides' encryption keys), which not every client has.
var supported = []uint16{ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3}

func (c *Config) suites() []uint16 {
	if len(c.CipherSuites) > 0 {
		return c.CipherSuites
	}
	return supported
}

// offerable are the suites a client offers: the configured ones it can
// complete. The ECDHE suites need the client's double certificates (the SM2
// key agreement uses its encryption key, and the server then requires its
// signing certificate), so a client without them leaves them out: a server
// preferring ECDHE would otherwise pick one and fail the handshake although
// an ECC suite is shared.
func (c *Config) offerable() []uint16 {
	all := c.suites()
	if c.SignCert != nil && ecdhKey(c.EncCert) != nil {
		return all
	}
	out := make([]uint16, 0, len(all))
	for _, s := range all {
		if st, ok := suites[s]; ok && !st.ecdhe {
			out = append(out, s)
		}
	}
	return out
}

// Conn is a TLCP connection over a net.Conn: Handshake, then Read and
// Write application data. Read and Write may run concurrently with each
// other.
type Conn struct {
	raw    net.Conn
	cfg    *Config
	client bool

	hsOnce sync.Once
	hsErr  error

	rmu    sync.Mutex
	in     *halfConn
	rbuf   []byte // raw bytes not yet a whole record, within rstore
	rstore []byte // the read buffer, allocated at the first read
	plain  []byte // application data not yet read
	hsbuf  []byte // handshake bytes not yet a whole message
	eof    bool

	wmu  sync.Mutex
	out  *halfConn
	wbuf []byte

	transcript hash.Hash // running SM3 over the handshake messages
	state      ConnectionState
}

// SuiteName names a cipher suite as GB/T 38636 does.
func SuiteName(id uint16) string {
	switch id {
	case ECC_SM4_CBC_SM3:
		return "ECC_SM4_CBC_SM3"
	case ECC_SM4_GCM_SM3:
		return "ECC_SM4_GCM_SM3"
	case ECDHE_SM4_CBC_SM3:
		return "ECDHE_SM4_CBC_SM3"
	case ECDHE_SM4_GCM_SM3:
		return "ECDHE_SM4_GCM_SM3"
	}
	return fmt.Sprintf("0x%04x", id)
}

// SuiteByName is the suite SuiteName names.
func SuiteByName(name string) (uint16, bool) {
	for _, id := range supported {
		if SuiteName(id) == name {
			return id, true
		}
	}
	return 0, false
}

// ConnectionState describes an established connection.
type ConnectionState struct {
	DidResume        bool
	CipherSuite      uint16
	PeerCertificates []*smx509.Certificate // signing certificate first, then encryption
}

// Server returns the server side of raw.
func Server(raw net.Conn, cfg *Config) *Conn { return &Conn{raw: raw, cfg: cfg} }

// Client returns the client side of raw.
func Client(raw net.Conn, cfg *Config) *Conn { return &Conn{raw: raw, cfg: cfg, client: true} }

// Handshake runs the handshake once; later calls return its result.
func (c *Conn) Handshake() error {
	c.hsOnce.Do(func() {
		if c.client {
			c.hsErr = c.clientHandshake()
		} else {
			c.hsErr = c.serverHandshake()
		}
		if c.hsErr != nil {
			var ae *AlertError
			switch {
			case errors.As(c.hsErr, &ae) && !ae.Remote:
				c.sendAlert(ae.Code)
			case errors.Is(c.hsErr, syscall.EPIPE) || errors.Is(c.hsErr, syscall.ECONNRESET):
				// The peer hung up while we were writing: its alert, if it
				// sent one first, says why.
				if _, _, err := c.readRecord(); errors.As(err, &ae) && ae.Remote {
					c.hsErr = err
				}
			}
		}
	})
	return c.hsErr
}

// HandshakeContext runs the handshake; ctx is checked before it starts
// (a transport that feeds the connection signals timeouts through Read).
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Handshake()
}

// CloseWrite sends close_notify; the connection stays open for reading.
func (c *Conn) CloseWrite() error {
	if c.hsErr == nil {
		c.sendAlert(AlertCloseNotify)
	}
	return nil
}

// ConnectionState is valid after the handshake.
func (c *Conn) ConnectionState() ConnectionState { return c.state }

func (c *Conn) sendAlert(code uint8) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	level := byte(2) // fatal
	if code == AlertCloseNotify {
		level = 1 // warning
	}
	c.wbuf = c.out.seal(c.wbuf[:0], recordAlert, []byte{level, code}, c.random)
	c.raw.Write(c.wbuf)
}

func (c *Conn) random(b []byte) { io.ReadFull(c.cfg.rand(), b) }

// writeRecords protects p as records of typ (split at 2^14) and writes
// them. Caller holds wmu.
func (c *Conn) writeRecords(typ uint8, p []byte) error {
	c.wbuf = c.appendRecords(c.wbuf[:0], typ, p)
	_, err := c.raw.Write(c.wbuf)
	return err
}

// appendRecords appends p protected as records of typ to dst.
func (c *Conn) appendRecords(dst []byte, typ uint8, p []byte) []byte {
	for len(p) > 0 || typ != recordApplicationData {
		n := min(len(p), maxPlaintext)
		dst = c.out.seal(dst, typ, p[:n], c.random)
		p = p[n:]
		if len(p) == 0 {
			break
		}
	}
	return dst
}

// writeFinished ends a side's handshake in one write: the handshake
// messages of flight (may be empty) under the current keys, then
// ChangeCipherSpec, then fin under out, which becomes the write side.
// One write, not three, is a third of the loopback sends. Caller holds wmu.
func (c *Conn) writeFinished(flight []byte, out *halfConn, fin []byte) error {
	c.wbuf = c.wbuf[:0]
	if len(flight) > 0 {
		c.wbuf = c.appendRecords(c.wbuf, recordHandshake, flight)
	}
	c.wbuf = c.appendRecords(c.wbuf, recordChangeCipherSpec, []byte{1})
	c.out = out
	c.wbuf = c.appendRecords(c.wbuf, recordHandshake, fin)
	_, err := c.raw.Write(c.wbuf)
	return err
}

// readRecord returns the next record's type and plaintext, decrypted in
// place in the read buffer: valid until the next readRecord, so callers
// copy what they keep. Caller holds rmu.
func (c *Conn) readRecord() (uint8, []byte, error) {
	for {
		if len(c.rbuf) >= 5 {
			typ, n, err := readRecordHeader(c.rbuf)
			if err != nil {
				return 0, nil, err
			}
			if len(c.rbuf) >= 5+n {
				frag := c.rbuf[5 : 5+n]
				c.rbuf = c.rbuf[5+n:]
				p, err := c.in.open(typ, frag)
				if err != nil {
					return 0, nil, err
				}
				if len(p) > maxPlaintext {
					return 0, nil, &AlertError{Code: AlertRecordOverflow}
				}
				if typ == recordAlert {
					if len(p) != 2 {
						return 0, nil, &AlertError{Code: AlertDecodeError}
					}
					if p[1] == AlertCloseNotify {
						return 0, nil, io.EOF
					}
					return 0, nil, &AlertError{Code: p[1], Remote: true}
				}
				return typ, p, nil
			}
		}
		// What is left of the buffer (less than a record) moves to the
		// front, and the rest of the store takes the next read. The store
		// starts small (handshake records are) and grows once to the
		// largest record when one is announced.
		size := smallReadBuf
		if len(c.rbuf) >= 5 && 5+int(binary.BigEndian.Uint16(c.rbuf[3:])) > smallReadBuf {
			size = readBufSize
		}
		if len(c.rstore) < size {
			c.rstore = make([]byte, size)
		}
		kept := copy(c.rstore, c.rbuf)
		n, err := c.raw.Read(c.rstore[kept:])
		c.rbuf = c.rstore[:kept+n]
		if n == 0 && err != nil {
			if err == io.EOF && len(c.rbuf) > 0 {
				return 0, nil, io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
}

// readBufSize holds the largest record readRecordHeader accepts with room
// to read ahead; smallReadBuf a handshake's records.
const (
	readBufSize  = 5 + maxPlaintext + 2048 + 4096
	smallReadBuf = 2048
)

// readHandshake returns the next handshake message (type, body) and adds
// it to the transcript. A ChangeCipherSpec record in between is an
// unexpected message.
func (c *Conn) readHandshake() (uint8, []byte, error) {
	for {
		if len(c.hsbuf) >= 4 {
			n := int(c.hsbuf[1])<<16 | int(c.hsbuf[2])<<8 | int(c.hsbuf[3])
			if n > 1<<20 {
				return 0, nil, &AlertError{Code: AlertDecodeError}
			}
			if len(c.hsbuf) >= 4+n {
				msg := c.hsbuf[:4+n]
				c.hsbuf = c.hsbuf[4+n:]
				c.addTranscript(msg)
				return msg[0], msg[4:], nil
			}
		}
		typ, p, err := c.readRecord()
		if err != nil {
			return 0, nil, err
		}
		if typ != recordHandshake {
			return 0, nil, &AlertError{Code: AlertUnexpectedMessage}
		}
		c.hsbuf = append(c.hsbuf, p...)
	}
}

// expectChangeCipherSpec reads the peer's ChangeCipherSpec and switches
// its direction to the new keys.
func (c *Conn) expectChangeCipherSpec(next *halfConn) error {
	typ, p, err := c.readRecord()
	if err != nil {
		return err
	}
	if typ != recordChangeCipherSpec || len(p) != 1 || p[0] != 1 || len(c.hsbuf) != 0 {
		return &AlertError{Code: AlertUnexpectedMessage}
	}
	c.in = next
	return nil
}

// handshakeMsg frames a handshake message and adds it to the transcript.
func (c *Conn) handshakeMsg(dst []byte, typ uint8, body []byte) []byte {
	start := len(dst)
	dst = append(dst, typ, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	dst = append(dst, body...)
	c.addTranscript(dst[start:])
	return dst
}

func (c *Conn) addTranscript(msg []byte) {
	if c.transcript == nil {
		c.transcript = sm3.New()
	}
	c.transcript.Write(msg)
}

// transcriptHash is the SM3 hash of the handshake messages so far.
func (c *Conn) transcriptHash() []byte { return c.transcript.Sum(nil) }

// Read reads application data, handshaking first if needed.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.plain) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		typ, p, err := c.readRecord()
		if err == io.EOF {
			c.eof = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if typ != recordApplicationData {
			return 0, fmt.Errorf("tlcp: unexpected record type %d after the handshake", typ)
		}
		c.plain = p // in the read buffer; the next readRecord waits until it is drained
	}
	n := copy(b, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// Write writes application data, handshaking first if needed.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeRecords(recordApplicationData, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close sends close_notify and closes the connection.
func (c *Conn) Close() error {
	if c.hsErr == nil {
		c.sendAlert(AlertCloseNotify)
	}
	return c.raw.Close()
}

// LocalAddr, RemoteAddr and the deadlines are the underlying connection's,
// so a Conn is a net.Conn.
func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

var _ net.Conn = (*Conn)(nil)

// Listener wraps accepted connections in TLCP server connections.
type Listener struct {
	net.Listener
	Config *Config
}

// Accept returns the next connection, not yet handshaken.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.Config), nil
}

// session is what resumption needs of an established session.
type session struct {
	id      []byte
	master  []byte
	suite   uint16
	peer    []*smx509.Certificate
	created time.Time
}

// SessionCache keeps sessions for resumption by ID (GB/T 38636 §6.4.5.2),
// bounded in size and age. Safe for concurrent use.
type SessionCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	m     map[string]*session
	order []string // insertion order, for eviction
}

// NewSessionCache keeps up to max sessions for ttl each.
func NewSessionCache(max int, ttl time.Duration) *SessionCache {
	return &SessionCache{max: max, ttl: ttl, m: map[string]*session{}}
}

func (sc *SessionCache) get(key string, now time.Time) *session {
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := sc.m[key]
	if s != nil && now.Sub(s.created) > sc.ttl {
		delete(sc.m, key)
		return nil
	}
	return s
}

func (sc *SessionCache) put(key string, s *session) {
	if sc == nil {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if _, ok := sc.m[key]; !ok {
		sc.order = append(sc.order, key)
	}
	sc.m[key] = s
	for len(sc.m) > sc.max && len(sc.order) > 0 {
		delete(sc.m, sc.order[0])
		sc.order = sc.order[1:]
	}
}

func (sc *SessionCache) remove(key string) {
	if sc == nil {
		return
	}
	sc.mu.Lock()
	delete(sc.m, key)
	sc.mu.Unlock()
}
