package tlcp

import (
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkServerHandshakeCPU is the server side's CPU per handshake: the
// server runs on a goroutine locked to its OS thread and adds up that
// thread's CPU time (user and system: its reads and writes included) over
// each Handshake call; waiting for the client costs nothing. Accepting and
// closing the connection are outside it (the proxy figure in
// scripts/bench-gm.sh has them). Reported as server-µs/handshake.
func BenchmarkServerHandshakeCPU(b *testing.B) {
	pki := newPKI(b)
	for _, tc := range []struct {
		name   string
		suite  uint16
		resume bool
	}{{"ECC_SM4_GCM_SM3/full", ECC_SM4_GCM_SM3, false}, {"ECC_SM4_CBC_SM3/full", ECC_SM4_CBC_SM3, false}, {"ECC_SM4_GCM_SM3/resumed", ECC_SM4_GCM_SM3, true}} {
		b.Run(tc.name, func(b *testing.B) {
			server := &Config{SignCert: pki.issue(b, "gm.test", false, false, time.Now().Add(time.Hour)), EncCert: pki.issue(b, "gm.test", true, false, time.Now().Add(time.Hour))}
			client := &Config{RootCAs: pki.pool, ServerName: "gm.test", CipherSuites: []uint16{tc.suite}}
			if tc.resume {
				server.SessionCache, client.SessionCache = NewSessionCache(100, time.Hour), NewSessionCache(100, time.Hour)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				cpu time.Duration
				err error
			}
			done := make(chan result, 1)
			go func() {
				runtime.LockOSThread()
				var total time.Duration
				var ts unix.Timespec
				for {
					raw, err := ln.Accept()
					if err != nil {
						done <- result{cpu: total}
						return
					}
					unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
					t0 := time.Duration(ts.Nano())
					err = Server(raw, server).Handshake()
					unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
					total += time.Duration(ts.Nano()) - t0
					raw.Close()
					if err != nil {
						done <- result{err: err}
						return
					}
				}
			}()
			warm := 1
			if tc.resume {
				warm = 2 // the first handshake fills the session cache
			}
			handshake := func() {
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c := Client(raw, client)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				if c.ConnectionState().DidResume != tc.resume {
					b.Fatalf("resumed = %v", c.ConnectionState().DidResume)
				}
				raw.Close()
			}
			for i := 0; i < warm; i++ {
				raw, _ := net.Dial("tcp", ln.Addr().String())
				Client(raw, client).Handshake()
				raw.Close()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				handshake()
			}
			b.StopTimer()
			ln.Close()
			r := <-done
			if r.err != nil {
				b.Fatal(r.err)
			}
			// The warm-up handshakes were counted too.
			b.ReportMetric(float64(r.cpu.Microseconds())/float64(b.N+warm), "server-µs/handshake")
		})
	}
}
