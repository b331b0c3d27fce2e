package upstream

import (
	"bufio"
	"net"
	"sync"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
)

// RPCCodec returns the codec for an RPC benchmark protocol, or nil.
func RPCCodec(name string) xprotocol.Codec {
	switch name {
	case bolt.Name:
		return bolt.Codec{}
	case dubbo.Name:
		return dubbo.Codec{}
	}
	return nil
}

// RPCResponse is a success response of size body bytes to request id.
func RPCResponse(codec xprotocol.Codec, dst []byte, id uint64, body []byte) []byte {
	if codec.Name() == bolt.Name {
		return bolt.AppendResponse(dst, uint32(id), bolt.StatusSuccess, "", body)
	}
	return dubbo.AppendResponse(dst, id, dubbo.StatusOK, body)
}

// ServeRPC answers every request of codec on ln with a size-byte success
// response (heartbeats too), in order, until ln is closed. Responses of one
// read are written together.
func ServeRPC(ln net.Listener, codec xprotocol.Codec, size int) {
	body := make([]byte, size)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			r := bufio.NewReaderSize(c, 64<<10)
			var in, out []byte
			var f xprotocol.Frame
			buf := make([]byte, 64<<10)
			for {
				n, err := r.Read(buf)
				if err != nil {
					return
				}
				in = append(in, buf[:n]...)
				out = out[:0]
				for {
					m, err := codec.Decode(in, &f)
					if err != nil {
						return
					}
					if m == 0 {
						break
					}
					switch f.Kind {
					case xprotocol.Request:
						out = RPCResponse(codec, out, f.ID, body)
					case xprotocol.Heartbeat:
						out = codec.AppendHeartbeatReply(out, &f)
					}
					in = in[m:]
				}
				in = append(in[:0:0], in...)
				if len(out) > 0 {
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}
		}()
	}
}

// ServeEcho echoes every byte back on each connection (Echo).
func ServeEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			Echo(c)
		}()
	}
}

// Echo sends every byte of c back until the peer half-closes, then
// half-closes too. It reads and writes with plain calls: no splice(2), which
// bytes moved by sockmap's redirect would bypass.
func Echo(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
