package engineconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/proxylab/proxylab/foundation/buffer"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
	"github.com/proxylab/proxylab/transport/rawepoll"
)

// goTLS is crypto/tls as a Protocol (the gotls engine's, minus metrics).
type goTLS struct{ *tls.Conn }

func (g goTLS) Negotiated() Negotiated {
	cs := g.ConnectionState()
	return Negotiated{ALPN: cs.NegotiatedProtocol, Version: tls.VersionName(cs.Version), Suite: tls.CipherSuiteName(cs.CipherSuite), Resumed: cs.DidResume}
}
func (goTLS) FailureReason(err error) string {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return "alert"
	}
	return ""
}

// echo writes back every plaintext byte and closes on EOF.
type echo struct{ transport.NopHandler }

func (echo) OnData(c transport.Conn, b *buffer.Buf) { c.Write(b) }
func (echo) OnReadEOF(c transport.Conn)             { c.Close() }

func serverConfig(t *testing.T) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"t"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// serve runs an echo server securing each accepted rawepoll connection with
// crypto/tls through a Conn whose handshakes hs runs.
func serve(t *testing.T, hs *Handshakers, timeout time.Duration) (string, *offload.Stats) {
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
	cfg := serverConfig(t)
	st := &offload.Stats{}
	ln.Start(func(c transport.Conn) {
		tc := New(c, true, timeout, st, hs)
		tc.SetProtocol(goTLS{tls.Server(tc.Adapter(), cfg)})
		tc.Start(echo{})
	})
	return ln.Addr().String(), st
}

func TestHandshakeModes(t *testing.T) {
	for _, mode := range []struct {
		name string
		hs   *Handshakers
	}{{"inline", NewInlineHandshakers()}, {"workers", NewHandshakers()}} {
		t.Run(mode.name, func(t *testing.T) {
			addr, st := serve(t, mode.hs, 10*time.Second)
			client := &tls.Config{InsecureSkipVerify: true}
			// Many clients at once, each echoing 256 KiB through records.
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for i := 0; i < 32; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					errs <- echoOnce(addr, client, 256<<10, byte(i))
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := st.Handshakes.Value(); n != 32 {
				t.Errorf("handshakes %d, want 32", n)
			}
			// A stalled client is closed after the timeout, counted as such
			// (a second listener, same pool, with a short timeout).
			addr, st = serve(t, mode.hs, 300*time.Millisecond)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			start := time.Now()
			if n, err := c.Read(make([]byte, 8)); n != 0 || err == nil || errors.Is(err, net.ErrClosed) || time.Since(start) < 250*time.Millisecond {
				t.Fatalf("stalled client: read %d, %v after %v", n, err, time.Since(start))
			}
			c.Close()
			// A client sending garbage gets an alert and is counted.
			c, _ = net.Dial("tcp", addr)
			c.Write([]byte("\x16\x03\x01\x00\x05hello"))
			io.ReadAll(c)
			c.Close()
			deadline := time.Now().Add(3 * time.Second)
			for {
				f, _, _ := st.Snapshot()
				if f["timeout"] == 1 && f["alert"]+f["handshake_error"] == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("failures %v, want one timeout and one bad hello", f)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The pool still serves after failures.
			if err := echoOnce(addr, client, 1, 7); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func echoOnce(addr string, cfg *tls.Config, size int, fill byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := make([]byte, size)
	for i := range want {
		want[i] = fill + byte(i)
	}
	go c.Write(want)
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo of %d bytes: %w", size, err)
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("byte %d differs", i)
		}
	}
	return nil
}

// A secured connection reports the event loop of the connection underneath
// (the upstream pools of a host are kept per loop), -1 over one without.
func TestLoopOfTheInnerConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	re, err := rawepoll.New(transport.Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	np, err := netpoll.New(transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer np.Close()
	for _, tr := range []transport.Transport{re, np} {
		ch := make(chan transport.Conn, 1)
		tr.Dial("tcp", ln.Addr().String(), 5*time.Second, func(c transport.Conn, err error) {
			if err != nil {
				t.Error(err)
			}
			ch <- c
		})
		inner := <-ch
		if inner == nil {
			t.FailNow()
		}
		want := -1
		if l, ok := inner.(transport.Looper); ok {
			want = l.Loop()
		}
		if tr == re && want < 0 {
			t.Fatal("a rawepoll connection reports no loop")
		}
		tc := New(inner, false, time.Second, nil, NewHandshakers())
		if got := tc.Loop(); got != want {
			t.Errorf("%s: secured connection on loop %d, want %d", tr.Name(), got, want)
		}
		inner.Close()
	}
}
