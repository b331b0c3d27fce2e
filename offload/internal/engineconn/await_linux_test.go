package engineconn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/rawepoll"
)

// slowKey signs with an in-memory key after delay, asynchronously: a
// deliberately slow remote signer.
type slowKey struct {
	key   *ecdsa.PrivateKey
	ctx   context.Context
	delay time.Duration
	block bool // sign by sleeping in Sign (the loop-stalling way)
}

func (k slowKey) Public() crypto.PublicKey { return k.key.Public() }

func (k slowKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.block {
		time.Sleep(k.delay)
		return k.key.Sign(r, digest, opts)
	}
	return Await(k.ctx, func(done func([]byte, error)) {
		time.AfterFunc(k.delay, func() { done(k.key.Sign(nil, digest, opts)) })
	})
}

// serveSlow is an echo server on one event loop whose handshakes run inline
// and sign with a slowKey.
func serveSlow(t *testing.T, delay time.Duration, block bool) (string, *offload.Stats) {
	t.Helper()
	tr, err := rawepoll.New(transport.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); tr.Close() })
	base := serverConfig(t)
	cert := base.Certificates[0]
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := cert
		c.PrivateKey = slowKey{cert.PrivateKey.(*ecdsa.PrivateKey), h.Context(), delay, block}
		return &c, nil
	}}
	st := &offload.Stats{}
	hs := NewInlineHandshakers()
	ln.Start(func(c transport.Conn) {
		tc := New(c, true, 30*time.Second, st, hs)
		tc.SetProtocol(goTLS{tls.Server(tc.Adapter(), cfg)})
		tc.Start(echo{})
	})
	return ln.Addr().String(), st
}

// TestAwaitDoesNotHoldTheLoop: 50 handshakes wait for a slow signature on
// the one event loop while an established connection on it keeps echoing
// at once; then all 50 complete.
func TestAwaitDoesNotHoldTheLoop(t *testing.T) {
	const delay = 1500 * time.Millisecond
	addr, st := serveSlow(t, delay, false)
	client := &tls.Config{InsecureSkipVerify: true}
	est, err := tls.Dial("tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	var wg sync.WaitGroup
	var done atomic.Int32
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, client)
			if err == nil {
				c.Close()
			}
			done.Add(1)
			errs <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // the handshakes reach the signature
	var worst time.Duration
	buf := make([]byte, 5)
	for i := 0; i < 20; i++ {
		start := time.Now()
		est.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := est.Write([]byte("ping!")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(est, buf); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	pending := 50 - done.Load()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("worst echo latency %v with %d handshakes waiting for their signature", worst, pending)
	if pending < 40 {
		t.Fatalf("only %d handshakes were waiting during the echoes: the test did not measure anything", pending)
	}
	if worst > delay/3 { // a blocked loop takes the whole delay; a loaded machine some 100 ms
		t.Fatalf("echo took %v on the loop while handshakes waited for signatures", worst)
	}
	// The server counts a handshake when the client's Finished arrives,
	// after the client's Dial has returned.
	for deadline := time.Now().Add(10 * time.Second); st.Handshakes.Value() != 51; {
		if time.Now().After(deadline) {
			f, _, _ := st.Snapshot()
			t.Fatalf("handshakes %d, want 51 (failures %v)", st.Handshakes.Value(), f)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
