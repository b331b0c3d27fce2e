//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"

	"github.com/proxylab/proxylab/offload"
)

// Available reports whether this binary can use PKCS#11 (built with cgo).
const Available = true

// retryEvery bounds how often a lost token is reconnected to: handshakes
// in between fail at once (reason unavailable) without calling the module.
const retryEvery = time.Second

// token is one logged-in token: a crypto11 context (a pool of sessions and
// a persistent logged-in one) shared by every key on it with the same PIN
// source. Tokens live for the process: a PKCS#11 module is initialised once
// per process (C_Initialize), so its contexts are process-wide too. A
// token that goes away is closed and opened again (log in again) on the
// next use after retryEvery.
type token struct {
	o Options

	mu      sync.Mutex // guards the fields below; held while (re)connecting
	ctx     *crypto11.Context
	gen     uint64 // bumped at each (re)connect: keys re-find their handle
	broken  bool
	lastTry time.Time

	// Asynchronous operations (SignAsync) queue here for the token's
	// workers, one per session (MaxSessions), started at the first one
	// and kept for the process.
	startWorkers sync.Once
	jobs         chan func()
}

// maxQueued bounds the operations waiting for a token worker; beyond it
// SignAsync fails at once (reason overloaded) rather than queue without
// end behind a slow token.
const maxQueued = 4096

// submit queues job for a worker; false when the queue is full.
func (t *token) submit(job func()) bool {
	t.startWorkers.Do(func() {
		n := t.o.MaxSessions
		if n == 0 {
			n = DefaultMaxSessions
		}
		t.jobs = make(chan func(), maxQueued)
		for i := 0; i < n; i++ {
			go func() {
				for job := range t.jobs {
					job()
				}
			}()
		}
	})
	select {
	case t.jobs <- job:
		return true
	default:
		return false
	}
}

var tokens = struct {
	sync.Mutex
	m map[string]*token
}{m: map[string]*token{}}

func tokenFor(o *Options) *token {
	tokens.Lock()
	defer tokens.Unlock()
	k := o.tokenKey()
	t := tokens.m[k]
	if t == nil {
		t = &token{o: *o}
		tokens.m[k] = t
	}
	return t
}

// context returns the token's context, connecting (or reconnecting after
// a failure) when needed.
func (t *token) context() (*crypto11.Context, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil && !t.broken {
		return t.ctx, t.gen, nil
	}
	if t.broken && time.Since(t.lastTry) < retryEvery {
		return nil, 0, &Error{Reason: "unavailable", Err: errUnavailable}
	}
	t.lastTry = time.Now()
	if t.ctx != nil {
		// Close waits for sessions in use to come back; on a lost token
		// their calls fail at once.
		_ = t.ctx.Close()
		t.ctx = nil
	}
	pin, err := t.o.pin()
	if err != nil {
		t.broken = true
		return nil, 0, &Error{Reason: "login", Err: err}
	}
	max := t.o.MaxSessions
	if max == 0 {
		max = DefaultMaxSessions
	}
	// One session of the pool is crypto11's persistent logged-in one.
	ctx, err := crypto11.Configure(&crypto11.Config{Path: t.o.Module, TokenLabel: t.o.TokenLabel, SlotNumber: t.o.Slot,
		Pin: pin, MaxSessions: max + 1, PoolWaitTimeout: 10 * time.Second})
	if err != nil {
		t.broken = true
		err = classify(fmt.Errorf("pkcs11: open %s: %w", t.o.String(), err))
		if e := (*Error)(nil); errors.As(err, &e) && e.Reason == "sign_failed" && strings.Contains(err.Error(), "could not find PKCS#11 token") {
			e.Reason = "token_not_present" // crypto11's unexported errTokenNotFound
		}
		return nil, 0, err
	}
	if t.broken {
		slog.Info("pkcs11: token back, logged in again", "token", t.o.String())
	}
	t.ctx, t.broken = ctx, false
	t.gen++
	return ctx, t.gen, nil
}

// fail marks the context of generation gen lost (once: later failures
// of the same generation find it marked).
func (t *token) fail(gen uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gen == gen && !t.broken {
		t.broken = true
		t.lastTry = time.Time{} // the first retry may come at once
		slog.Warn("pkcs11: token lost; handshakes using it fail until it is back", "token", t.o.String(), "err", err)
	}
}

// Key is a private key in a token, usable as crypto.Signer and (RSA)
// crypto.Decrypter from any goroutine. Each operation takes a pooled
// session for its duration and blocks its caller until the token answers.
type Key struct {
	o     Options
	tok   *token
	pub   crypto.PublicKey
	count func(reason string)

	mu     sync.Mutex // guards signer and gen
	signer crypto11.Signer
	gen    uint64
}

var (
	_ offload.AsyncSigner = (*Key)(nil)
	_ crypto.Decrypter    = rsaKey{}
)

// SignAsync signs on one of the token's workers and calls done there: the
// handshake waiting for it holds no goroutine of its own, and at most
// MaxSessions signatures run at once.
func (k *Key) SignAsync(digest []byte, opts crypto.SignerOpts, done func([]byte, error)) {
	if !k.tok.submit(func() { done(k.Sign(nil, digest, opts)) }) {
		k.count("overloaded")
		done(nil, &Error{Reason: "overloaded", Err: errors.New("pkcs11: too many signatures waiting for the token")})
	}
}

// PrivateKey is the key as crypto/tls takes it: a crypto.Signer, and a
// crypto.Decrypter too for RSA keys only (crypto/tls offers RSA key
// exchange to any key that decrypts).
func (k *Key) PrivateKey() crypto.Signer {
	if _, ok := k.pub.(*rsa.PublicKey); ok {
		return rsaKey{k}
	}
	return k
}

// rsaKey is an RSA Key, which also decrypts.
type rsaKey struct{ *Key }

// Open logs into the token (or reuses its login) and finds the key; an
// error says why (no module, no token, wrong PIN, no such key). count is
// called with the reason of every failed operation later (nil: none).
func Open(o *Options, count func(reason string)) (*Key, error) {
	if count == nil {
		count = func(string) {}
	}
	k := &Key{o: *o, tok: tokenFor(o), count: count}
	s, err := k.current()
	if err != nil {
		return nil, err
	}
	k.pub = s.Public()
	return k, nil
}

// current is the key's handle in the token's current context, found again
// after a reconnect.
func (k *Key) current() (crypto11.Signer, error) {
	ctx, gen, err := k.tok.context()
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil && k.gen == gen {
		return k.signer, nil
	}
	id, _ := k.o.id()
	var label []byte
	if k.o.KeyLabel != "" {
		label = []byte(k.o.KeyLabel)
	}
	s, err := ctx.FindKeyPair(id, label)
	if err != nil {
		var code p11.Error
		if !errors.As(err, &code) { // searched and not found: the token is fine
			return nil, &Error{Reason: "key_not_found", Err: fmt.Errorf("pkcs11: key %s: %w", k.o.String(), err)}
		}
		err = classify(fmt.Errorf("pkcs11: key %s: %w", k.o.String(), err))
		if e := (*Error)(nil); errors.As(err, &e) && e.reconnect() {
			k.tok.fail(gen, err)
		}
		return nil, err
	}
	k.signer, k.gen = s, gen
	return s, nil
}

// Public is the key's public half, read from the token at Open.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs digest in the token; the rand argument is unused (the token
// draws its own). It blocks until the token answers.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.do(func(s crypto11.Signer) ([]byte, error) { return s.Sign(nil, digest, opts) })
}

// Decrypt decrypts in the token (TLS 1.2 RSA key exchange).
func (k rsaKey) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return k.do(func(s crypto11.Signer) ([]byte, error) {
		d, ok := s.(crypto.Decrypter)
		if !ok {
			return nil, errors.New("pkcs11: the token's key cannot decrypt")
		}
		return d.Decrypt(nil, msg, opts)
	})
}

func (k *Key) do(op func(crypto11.Signer) ([]byte, error)) ([]byte, error) {
	s, err := k.current()
	if err != nil {
		k.count(reasonOf(err))
		return nil, err
	}
	out, err := op(s)
	if err != nil {
		err = classify(fmt.Errorf("pkcs11: %s: %w", k.o.String(), err))
		var e *Error
		if errors.As(err, &e) && e.reconnect() {
			k.mu.Lock()
			gen := k.gen
			k.mu.Unlock()
			k.tok.fail(gen, err)
		}
		k.count(reasonOf(err))
		return nil, err
	}
	return out, nil
}

// classify wraps err in an *Error naming why a token operation failed.
func classify(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var code p11.Error
	if !errors.As(err, &code) {
		if errors.Is(err, errUnavailable) {
			return &Error{Reason: "unavailable", Err: err}
		}
		return &Error{Reason: "sign_failed", Err: err}
	}
	return &Error{Reason: reasonFor(uint(code)), Err: err}
}

// reasonFor names a PKCS#11 return value for the error counter.
func reasonFor(rv uint) string {
	switch rv {
	case p11.CKR_TOKEN_NOT_PRESENT, p11.CKR_DEVICE_REMOVED, p11.CKR_SLOT_ID_INVALID, p11.CKR_TOKEN_NOT_RECOGNIZED:
		return "token_not_present"
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_SESSION_COUNT:
		return "session"
	case p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_PIN_INCORRECT, p11.CKR_PIN_LOCKED, p11.CKR_PIN_EXPIRED, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE:
		return "login"
	case p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		return "key_not_found"
	case p11.CKR_DEVICE_ERROR, p11.CKR_DEVICE_MEMORY, p11.CKR_GENERAL_ERROR, p11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return "device"
	}
	return "sign_failed"
}
