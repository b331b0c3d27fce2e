package tls13

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm4"
)

// ticketLifetime is how long a ticket may resume (RFC 8446 allows 7 days).
const ticketLifetime = time.Hour

// session is what resuming needs: the PSK, the suite it was made under,
// when it was issued, and (client) the ticket and its age obfuscation.
type session struct {
	suite   uint16
	psk     []byte
	created time.Time
	ageAdd  uint32
	ticket  []byte
}

// TicketKeys seal a server's tickets with SM4-GCM; the ticket is
// the server's whole state for the session (no server cache). Share one
// per listener; it is safe for concurrent use.
type TicketKeys struct{ aead cipher.AEAD }

// NewTicketKeys makes ticket keys from a 16-byte SM4 key.
func NewTicketKeys(key []byte) (*TicketKeys, error) {
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &TicketKeys{aead: a}, nil
}

// seal: nonce ‖ SM4-GCM(suite ‖ created ‖ age_add ‖ psk).
func (k *TicketKeys) seal(rnd io.Reader, s *session) ([]byte, error) {
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, err
	}
	p := binary.BigEndian.AppendUint16(nil, s.suite)
	p = binary.BigEndian.AppendUint64(p, uint64(s.created.Unix()))
	p = binary.BigEndian.AppendUint32(p, s.ageAdd)
	p = append(p, s.psk...)
	return k.aead.Seal(nonce, nonce, p, nil), nil
}

var errTicket = errors.New("tls13: ticket refused")

// open returns the ticket's session unless it is forged or expired.
func (k *TicketKeys) open(t []byte, now time.Time) (*session, error) {
	if len(t) < 12 {
		return nil, errTicket
	}
	p, err := k.aead.Open(nil, t[:12], t[12:], nil)
	if err != nil || len(p) != 2+8+4+hashLen {
		return nil, errTicket
	}
	s := &session{suite: binary.BigEndian.Uint16(p), created: time.Unix(int64(binary.BigEndian.Uint64(p[2:])), 0),
		ageAdd: binary.BigEndian.Uint32(p[10:]), psk: p[14:]}
	if age := now.Sub(s.created); age < -time.Minute || age > ticketLifetime {
		return nil, errTicket
	}
	return s, nil
}

// newSessionTicket is a NewSessionTicket message (§4.6.1) for a session
// whose PSK derives from resumption with a one-byte nonce.
func newSessionTicket(k *TicketKeys, rnd io.Reader, suite uint16, resumption []byte, now time.Time) ([]byte, error) {
	var b [5]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, err
	}
	nonce := b[4:]
	s := &session{suite: suite, psk: ticketPSK(resumption, nonce), created: now, ageAdd: binary.BigEndian.Uint32(b[:4])}
	ticket, err := k.seal(rnd, s)
	if err != nil {
		return nil, err
	}
	m := binary.BigEndian.AppendUint32(nil, uint32(ticketLifetime/time.Second))
	m = binary.BigEndian.AppendUint32(m, s.ageAdd)
	m = appendVec8(m, nonce)
	m = appendVec16(m, ticket)
	m = append(m, 0, 0) // no extensions
	return handshakeMsg(msgNewSessionTicket, m), nil
}

// parseNewSessionTicket reads a ticket into a client session.
func parseNewSessionTicket(body []byte, suite uint16, resumption []byte, now time.Time) (*session, time.Duration, error) {
	r := reader{b: body}
	lt := r.take(4)
	add := r.take(4)
	nonce := r.vec8()
	ticket := r.vec16()
	r.vec16()
	if r.bad || len(r.b) != 0 || len(ticket) == 0 {
		return nil, 0, alert(alertDecodeError)
	}
	life := time.Duration(binary.BigEndian.Uint32(lt)) * time.Second
	return &session{suite: suite, psk: ticketPSK(resumption, nonce), created: now, ageAdd: binary.BigEndian.Uint32(add),
		ticket: append([]byte(nil), ticket...)}, life, nil
}

// SessionCache keeps a client's latest ticket per server name, bounded.
// Safe for concurrent use; share one per cluster.
type SessionCache struct {
	mu    sync.Mutex
	max   int
	m     map[string]*session
	order []string
}

// NewSessionCache keeps tickets for up to max servers.
func NewSessionCache(max int) *SessionCache { return &SessionCache{max: max, m: map[string]*session{}} }

// take returns the ticket for key and forgets it (a ticket is used once:
// RFC 8446 §C.4 asks clients not to reuse them).
func (sc *SessionCache) take(key string, now time.Time) *session {
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := sc.m[key]
	delete(sc.m, key)
	if s == nil || now.Sub(s.created) > ticketLifetime {
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
	if len(sc.order) > 2*sc.max+16 {
		// Taken keys leave stale entries: keep each live key once, in
		// insertion order (its latest).
		seen := map[string]bool{}
		var live []string
		for i := len(sc.order) - 1; i >= 0; i-- {
			if k := sc.order[i]; sc.m[k] != nil && !seen[k] {
				seen[k] = true
				live = append(live, k)
			}
		}
		slices.Reverse(live)
		sc.order = live
	}
}
