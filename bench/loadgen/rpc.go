package loadgen

import (
	"errors"
	"fmt"
	"net"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
)

// rpcClient sends one RPC request at a time on its connection and reads
// the response with the same ID; a non-success status is an error.
type rpcClient struct {
	c     net.Conn
	codec xprotocol.Codec
	req   []byte
	id    uint64
	buf   []byte
	f     xprotocol.Frame
}

// benchService is what the generator calls: the lab routes on it.
const benchService, benchMethod = "bench.Service", "echo"

func newRPCClient(c net.Conn, codec xprotocol.Codec, cfg Config) *rpcClient {
	body := make([]byte, cfg.RequestBody)
	var req []byte
	if codec.Name() == bolt.Name {
		req = bolt.AppendRequest(nil, false, 0, false, cfg.Timeout, "com.alipay.sofa.rpc.core.request.SofaRequest",
			[]bolt.Header{{Key: "service", Value: benchService}, {Key: "sofa_head_method_name", Value: benchMethod}}, body)
	} else {
		b := dubbo.AppendString(nil, "2.0.2")
		b = dubbo.AppendString(b, benchService)
		b = dubbo.AppendString(b, "1.0.0")
		b = dubbo.AppendString(b, benchMethod)
		b = dubbo.AppendString(b, "[B")
		b = append(b, body...)
		req = dubbo.AppendRequest(nil, 0, true, b)
	}
	return &rpcClient{c: c, codec: codec, req: req, buf: make([]byte, 0, 64<<10)}
}

func (r *rpcClient) Close() error { return r.c.Close() }

func (r *rpcClient) exchange() error {
	r.id++
	r.codec.SetID(r.req, r.id)
	if _, err := r.c.Write(r.req); err != nil {
		return err
	}
	for {
		n, err := r.codec.Decode(r.buf, &r.f)
		if err != nil {
			return err
		}
		if n > 0 {
			f := r.f
			r.buf = r.buf[:copy(r.buf, r.buf[n:])]
			if f.Kind != xprotocol.Response {
				continue
			}
			if f.ID != r.id {
				return fmt.Errorf("loadgen: response to %d while waiting for %d", f.ID, r.id)
			}
			if st := r.codec.HTTPStatus(&f); st != 200 {
				return fmt.Errorf("%w: %s status %d", errStatus, r.codec.Name(), f.Status)
			}
			return nil
		}
		if len(r.buf) == cap(r.buf) {
			return errors.New("loadgen: response too large")
		}
		m, err := r.c.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		if err != nil && m == 0 {
			return err
		}
	}
}
