// Package tls13 is TLS 1.3 (RFC 8446) with the ShangMi profile of RFC
// 8998 only: cipher suites TLS_SM4_GCM_SM3 and TLS_SM4_CCM_SM3, key
// exchange on curveSM2, signatures sm2sig_sm3 with single SM2
// certificates. Keys are used through crypto.Signer only.
package tls13

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Certificate is a chain (DER, leaf first) and its leaf's SM2 key.
type Certificate struct {
	Chain [][]byte
	Key   crypto.Signer
}

// Config configures one side. Shared between connections; not modified.
type Config struct {
	// Certificate serves (server) or answers a CertificateRequest
	// (client); GetCertificate, when set on a server, chooses it by the
	// client's server_name ("" when none).
	Certificate    *Certificate
	GetCertificate func(serverName string) *Certificate
	// CipherSuites in preference order; empty: GCM, then CCM.
	CipherSuites []uint16
	// NextProtos are the ALPN protocols in preference order (the server's
	// preference decides).
	NextProtos []string
	// RootCAs verify the server (client side).
	RootCAs *smx509.CertPool
	// ClientCAs, when set on a server, require a client certificate
	// verified against them (client side: Certificate answers a request).
	ClientCAs          *smx509.CertPool
	ServerName         string
	InsecureSkipVerify bool
	// TicketKeys, on a server, issue a session ticket after each full
	// handshake and resume the sessions of the tickets clients offer
	// (psk_dhe_ke: a fresh curveSM2 exchange each time). SessionCache, on
	// a client, keeps the tickets received and offers them. nil: none.
	TicketKeys   *TicketKeys
	SessionCache *SessionCache
	Rand         io.Reader

	// noInitialShare makes a client send no key share at first, forcing a
	// HelloRetryRequest (tests).
	noInitialShare bool
	// sessionByName keys a client's tickets by server name only (tests:
	// each connection is to a new port).
	sessionByName bool
}

func (c *Config) suites() []uint16 {
	if len(c.CipherSuites) > 0 {
		return c.CipherSuites
	}
	return []uint16{TLS_SM4_GCM_SM3, TLS_SM4_CCM_SM3}
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

// ConnectionState describes an established connection.
type ConnectionState struct {
	CipherSuite      uint16
	ALPN             string
	ServerName       string
	PeerCertificates []*smx509.Certificate
	HelloRetried     bool
	DidResume        bool
}

// Conn is a TLS 1.3-SM connection over a net.Conn. Read and Write may run
// concurrently with each other.
type Conn struct {
	raw    net.Conn
	cfg    *Config
	client bool

	hsOnce sync.Once
	hsErr  error
	th     *transcript
	state  ConnectionState
	// resumption is resumption_master_secret (client with a SessionCache:
	// tickets received derive their PSK from it).
	resumption []byte

	rmu    sync.Mutex
	in     *halfConn
	rbuf   []byte
	rstore []byte
	plain  []byte
	hsbuf  []byte
	eof    bool

	wmu        sync.Mutex
	out        *halfConn
	wbuf       []byte
	updateOwed bool // the peer asked for a KeyUpdate; sent with the next write
}

// Server returns the server side of raw.
func Server(raw net.Conn, cfg *Config) *Conn { return &Conn{raw: raw, cfg: cfg} }

// Client returns the client side of raw.
func Client(raw net.Conn, cfg *Config) *Conn { return &Conn{raw: raw, cfg: cfg, client: true} }

// Handshake runs the handshake once; later calls return its result. A
// locally detected error sends its alert.
func (c *Conn) Handshake() error {
	c.hsOnce.Do(func() {
		c.th = newTranscript()
		if c.client {
			c.hsErr = c.clientHandshake()
		} else {
			c.hsErr = c.serverHandshake()
		}
		c.th = nil
		var ae *AlertError
		switch {
		case c.hsErr == nil:
		case errors.As(c.hsErr, &ae) && !ae.Remote:
			c.sendAlert(ae.Code)
		case errors.Is(c.hsErr, syscall.EPIPE) || errors.Is(c.hsErr, syscall.ECONNRESET):
			if _, _, err := c.readRecord(); errors.As(err, &ae) && ae.Remote {
				c.hsErr = err
			}
		}
	})
	return c.hsErr
}

// HandshakeContext runs the handshake; ctx is checked before it starts.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.Handshake()
}

// ConnectionState is valid after the handshake.
func (c *Conn) ConnectionState() ConnectionState { return c.state }

func (c *Conn) sendAlert(code uint8) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	level := byte(2)
	if code == alertCloseNotify {
		level = 1
	}
	c.wbuf = c.out.seal(c.wbuf[:0], recordAlert, []byte{level, code})
	c.raw.Write(c.wbuf)
}

// appendRecords appends p protected as records of typ.
func (c *Conn) appendRecords(dst []byte, typ byte, p []byte) []byte {
	for {
		n := min(len(p), maxPlaintext)
		dst = c.out.seal(dst, typ, p[:n])
		p = p[n:]
		if len(p) == 0 {
			return dst
		}
	}
}

// writeHandshake writes handshake messages under the current keys.
func (c *Conn) writeHandshake(msgs []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.appendRecords(c.wbuf[:0], recordHandshake, msgs)
	_, err := c.raw.Write(c.wbuf)
	return err
}

// readRecord returns the next record's type and plaintext (valid until
// the next call). change_cipher_spec records of middlebox compatibility
// (RFC 8446 §5) are skipped during the handshake. Caller holds rmu or
// runs the handshake.
func (c *Conn) readRecord() (byte, []byte, error) {
	for {
		if len(c.rbuf) >= 5 {
			n := int(binary.BigEndian.Uint16(c.rbuf[3:]))
			if n > maxCiphertext || c.in == nil && n > maxPlaintext {
				return 0, nil, alert(alertRecordOverflow)
			}
			if c.rbuf[1] != 3 {
				return 0, nil, alert(alertProtocolVersion)
			}
			if len(c.rbuf) >= 5+n {
				hdr, frag := c.rbuf[:5], c.rbuf[5:5+n]
				c.rbuf = c.rbuf[5+n:]
				if hdr[0] == recordChangeCipherSpec && c.th != nil {
					if n != 1 || frag[0] != 1 {
						return 0, nil, alert(alertUnexpectedMessage)
					}
					continue
				}
				typ, p, err := c.in.open(hdr, frag)
				if err != nil {
					return 0, nil, err
				}
				if typ == recordAlert {
					if len(p) != 2 {
						return 0, nil, alert(alertDecodeError)
					}
					if p[1] == alertCloseNotify {
						return 0, nil, io.EOF
					}
					return 0, nil, &AlertError{Code: p[1], Remote: true}
				}
				if len(p) == 0 && typ != recordApplicationData {
					return 0, nil, alert(alertUnexpectedMessage)
				}
				return typ, p, nil
			}
		}
		size := 2048
		if len(c.rbuf) >= 5 && 5+int(binary.BigEndian.Uint16(c.rbuf[3:])) > size {
			size = 5 + maxCiphertext + 4096
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

// readHandshake returns the next handshake message, whole (type byte and
// length included; the caller adds it to the transcript).
func (c *Conn) readHandshake() ([]byte, error) {
	for {
		if len(c.hsbuf) >= 4 {
			n := int(c.hsbuf[1])<<16 | int(c.hsbuf[2])<<8 | int(c.hsbuf[3])
			if n > 1<<17 {
				return nil, alert(alertDecodeError)
			}
			if len(c.hsbuf) >= 4+n {
				msg := append([]byte(nil), c.hsbuf[:4+n]...)
				c.hsbuf = c.hsbuf[4+n:]
				return msg, nil
			}
		}
		typ, p, err := c.readRecord()
		if err != nil {
			return nil, err
		}
		if typ != recordHandshake {
			return nil, alert(alertUnexpectedMessage)
		}
		c.hsbuf = append(c.hsbuf, p...)
	}
}

// expect reads the next handshake message, which must be of typ, adds it
// to the transcript and returns its body.
func (c *Conn) expect(typ byte) ([]byte, error) {
	msg, err := c.readHandshake()
	if err != nil {
		return nil, err
	}
	if msg[0] != typ {
		return nil, alert(alertUnexpectedMessage)
	}
	c.th.add(msg)
	return msg[4:], nil
}

// setIn switches the read keys; no handshake bytes may straddle the
// change (RFC 8446 §5.1).
func (c *Conn) setIn(h *halfConn) error {
	if len(c.hsbuf) != 0 {
		return alert(alertUnexpectedMessage)
	}
	c.in = h
	return nil
}

// Read reads application data, handshaking first if needed. Post-handshake
// messages are handled here: KeyUpdate switches the read keys (and owes
// the peer one when it asks), NewSessionTicket is ignored.
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
		switch typ {
		case recordApplicationData:
			c.plain = p
		case recordHandshake:
			if err := c.postHandshake(p); err != nil {
				return 0, err
			}
		default:
			c.sendAlert(alertUnexpectedMessage)
			return 0, alert(alertUnexpectedMessage)
		}
	}
	n := copy(b, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// postHandshake handles whole post-handshake messages. Caller holds rmu.
func (c *Conn) postHandshake(p []byte) error {
	c.hsbuf = append(c.hsbuf, p...)
	for len(c.hsbuf) >= 4 {
		n := int(c.hsbuf[1])<<16 | int(c.hsbuf[2])<<8 | int(c.hsbuf[3])
		if n > 1<<16 {
			return c.fail(alertDecodeError)
		}
		if len(c.hsbuf) < 4+n {
			return nil
		}
		typ, body := c.hsbuf[0], c.hsbuf[4:4+n]
		c.hsbuf = c.hsbuf[4+n:]
		switch {
		case typ == msgKeyUpdate && len(body) == 1 && body[0] <= 1:
			if len(c.hsbuf) != 0 {
				return c.fail(alertUnexpectedMessage)
			}
			next, err := c.in.next()
			if err != nil {
				return c.fail(alertInternalError)
			}
			c.in = next
			if body[0] == 1 {
				c.wmu.Lock()
				c.updateOwed = true
				c.wmu.Unlock()
			}
		case typ == msgNewSessionTicket && c.client:
			if c.cfg.SessionCache == nil || c.resumption == nil {
				break
			}
			sess, life, err := parseNewSessionTicket(body, c.state.CipherSuite, c.resumption, time.Now())
			if err != nil {
				return c.fail(alertDecodeError)
			}
			if life > 0 {
				c.cfg.SessionCache.put(c.sessionKey(), sess)
			}
		default:
			return c.fail(alertUnexpectedMessage)
		}
	}
	return nil
}

// sessionKey names the server a client's tickets are for.
func (c *Conn) sessionKey() string {
	if c.cfg.sessionByName {
		return c.cfg.ServerName
	}
	return c.cfg.ServerName + "|" + c.raw.RemoteAddr().String()
}

func (c *Conn) fail(code uint8) error {
	c.sendAlert(code)
	return alert(code)
}

// KeyUpdate sends a KeyUpdate and switches the write keys; the peer is
// asked to update too when requestPeer.
func (c *Conn) KeyUpdate(requestPeer bool) error {
	if err := c.Handshake(); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.keyUpdateLocked(requestPeer)
}

// keyUpdateLocked: caller holds wmu.
func (c *Conn) keyUpdateLocked(requestPeer bool) error {
	req := byte(0)
	if requestPeer {
		req = 1
	}
	c.wbuf = c.out.seal(c.wbuf[:0], recordHandshake, handshakeMsg(msgKeyUpdate, []byte{req}))
	if _, err := c.raw.Write(c.wbuf); err != nil {
		return err
	}
	next, err := c.out.next()
	if err != nil {
		return err
	}
	c.out = next
	return nil
}

// Write writes application data, handshaking first if needed.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.updateOwed {
		c.updateOwed = false
		if err := c.keyUpdateLocked(false); err != nil {
			return 0, err
		}
	}
	c.wbuf = c.appendRecords(c.wbuf[:0], recordApplicationData, b)
	if _, err := c.raw.Write(c.wbuf); err != nil {
		return 0, err
	}
	return len(b), nil
}

// CloseWrite sends close_notify; the connection stays open for reading.
func (c *Conn) CloseWrite() error {
	if c.hsErr == nil {
		c.sendAlert(alertCloseNotify)
	}
	return nil
}

// Close sends close_notify and closes the connection.
func (c *Conn) Close() error {
	c.CloseWrite()
	return c.raw.Close()
}

func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

var _ net.Conn = (*Conn)(nil)
