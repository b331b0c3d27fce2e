package rpc

import (
	"bytes"
	"net"
	"os"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/network"
	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/stream"
	"github.com/proxylab/proxylab/transport"
	"github.com/proxylab/proxylab/transport/netpoll"
)

// heldApp answers every request only when release is called.
type heldApp struct{ got chan stream.ResponseEncoder }

func (a *heldApp) NewStream(enc stream.ResponseEncoder) stream.RequestDecoder {
	return &heldStream{a: a, enc: enc}
}

type heldStream struct {
	a   *heldApp
	enc stream.ResponseEncoder
}

func (s *heldStream) DecodeHead(*stream.Head, bool)    { s.a.got <- s.enc }
func (s *heldStream) DecodeData([]byte, bool)          {}
func (s *heldStream) DecodeTrailers(*protocol.Headers) {}
func (s *heldStream) OnAboveWriteHighWatermark()       {}
func (s *heldStream) OnBelowWriteLowWatermark()        {}
func (s *heldStream) OnReset(error)                    {}

type handed struct {
	fd   int
	data []byte
}

// TestServerConnMigrate: an idle connection is handed over at once; one
// with a request in flight answers it first and hands over the bytes of
// the next request unparsed; the socket handed over still reaches the
// client.
func TestServerConnMigrate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight bool
	}{{"idle", false}, {"request in flight", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := netpoll.New(transport.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			a := &heldApp{got: make(chan stream.ResponseEncoder, 4)}
			set := &ServerSettings{Codec: bolt.Codec{}}
			l, err := network.NewListener("rpc", tr, "127.0.0.1:0", nil, func() ([]network.ReadFilter, []network.WriteFilter) {
				return []network.ReadFilter{NewServerConn(set, a)}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			l.Start()
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var enc stream.ResponseEncoder
			if tc.inFlight {
				c.Write(boltReq(1, "m", false))
				select {
				case enc = <-a.got:
				case <-time.After(5 * time.Second):
					t.Fatal("request not dispatched")
				}
			} else {
				for l.Active() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			out := make(chan handed, 2)
			moving, draining := l.Migrate(func(_ string, fd int, data []byte) { out <- handed{fd, data} })
			if moving != 1 || draining != 0 {
				t.Fatalf("moving %d draining %d", moving, draining)
			}
			next := boltReq(2, "m", false)
			if tc.inFlight {
				c.Write(next) // after Migrate: carried, not parsed here
				time.Sleep(50 * time.Millisecond)
				select {
				case <-out:
					t.Fatal("handed over with a request in flight")
				case <-a.got:
					t.Fatal("a request was parsed after Migrate")
				default:
				}
				enc.Session().Lock()
				enc.EncodeHead(&stream.Head{Status: 200, Frame: bolt.AppendResponse(nil, 9, bolt.StatusSuccess, "", []byte("one"))}, true)
				enc.Session().Unlock()
				if f := readFrames(t, c, bolt.Codec{}, 1); f[0].ID != 1 {
					t.Fatalf("answer id %d", f[0].ID)
				}
			}
			var h handed
			select {
			case h = <-out:
			case <-time.After(5 * time.Second):
				t.Fatal("not handed over")
			}
			f := os.NewFile(uintptr(h.fd), "handed")
			defer f.Close()
			want := []byte(nil)
			if tc.inFlight {
				want = next
			}
			if !bytes.Equal(h.data, want) {
				t.Fatalf("carried %d bytes, want %d", len(h.data), len(want))
			}
			if _, err := f.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 2)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(got); err != nil || string(got) != "hi" {
				t.Fatalf("the handed socket: %q %v", got, err)
			}
		})
	}
}
