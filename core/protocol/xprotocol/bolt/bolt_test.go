package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

var sofaHeaders = []Header{{"service", "com.alipay.test.TestService:1.0"}, {"sofa_head_method_name", "sayHello"}, {"rpc_trace_context.sofaTraceId", "0a0fe9"}}

func TestDecodeFrames(t *testing.T) {
	c := Codec{}
	cases := []struct {
		name    string
		frame   []byte
		kind    xprotocol.Kind
		id      uint64
		status  uint32
		service string
		method  string
		timeout time.Duration
	}{
		{"v1 request", AppendRequest(nil, false, 7, false, 3*time.Second, "com.alipay.sofa.rpc.core.request.SofaRequest", sofaHeaders, []byte("hessian-body")),
			xprotocol.Request, 7, 0, "com.alipay.test.TestService:1.0", "sayHello", 3 * time.Second},
		{"v2 request", AppendRequest(nil, true, 1<<31, false, time.Second, "c", sofaHeaders, []byte("x")), xprotocol.Request, 1 << 31, 0, "com.alipay.test.TestService:1.0", "sayHello", time.Second},
		{"v2 request with CRC", EnableCRC(AppendRequest(nil, true, 9, false, time.Second, "c", sofaHeaders, []byte("x"))), xprotocol.Request, 9, 0, "com.alipay.test.TestService:1.0", "sayHello", time.Second},
		{"oneway", AppendRequest(nil, false, 8, true, 0, "", nil, nil), xprotocol.Oneway, 8, 0, "", "", 0},
		{"response", AppendResponse(nil, 7, StatusThreadpoolBusy, "", []byte("busy")), xprotocol.Response, 7, StatusThreadpoolBusy, "", "", 0},
		{"heartbeat", Codec{}.AppendHeartbeat(nil, 3), xprotocol.Heartbeat, 3, 0, "", "", time.Second},
		{"heartbeat reply", Codec{}.AppendHeartbeatReply(nil, &xprotocol.Frame{ID: 3, Meta: protoV1 | codecHessian2<<8}), xprotocol.HeartbeatReply, 3, 0, "", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c.Match(tc.frame) != xprotocol.Match {
				t.Fatal("not matched")
			}
			// Every strict prefix needs more bytes.
			var f xprotocol.Frame
			for i := 0; i < len(tc.frame); i++ {
				if n, err := c.Decode(tc.frame[:i], &f); n != 0 || err != nil {
					t.Fatalf("prefix of %d bytes: %d %v", i, n, err)
				}
			}
			n, err := c.Decode(append(append([]byte(nil), tc.frame...), 0xff), &f)
			if err != nil || n != len(tc.frame) {
				t.Fatalf("%d of %d bytes: %v", n, len(tc.frame), err)
			}
			if f.Kind != tc.kind || f.ID != tc.id || f.Status != tc.status || f.Timeout != tc.timeout {
				t.Fatalf("%v id=%d status=%d timeout=%v", f.Kind, f.ID, f.Status, f.Timeout)
			}
			if got := string(f.Headers.Get(xprotocol.FieldService)); got != tc.service {
				t.Fatalf("service %q", got)
			}
			if got := string(f.Headers.Get(xprotocol.FieldMethod)); got != tc.method {
				t.Fatalf("method %q", got)
			}
			for _, name := range []string{xprotocol.FieldService, xprotocol.FieldMethod} {
				n := 0
				for _, fl := range f.Headers.Fields {
					if string(fl.Name) == name {
						n++
					}
				}
				if n > 1 {
					t.Fatalf("%d %q fields: a matcher would see them joined", n, name)
				}
			}
			// The ID is rewritten in place, CRC kept valid.
			raw := append([]byte(nil), tc.frame...)
			c.SetID(raw, 0xdeadbeef)
			if n, err := c.Decode(raw, &f); err != nil || n != len(raw) || f.ID != 0xdeadbeef {
				t.Fatalf("after SetID: %d %v id=%x", n, err, f.ID)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	c := Codec{}
	req := AppendRequest(nil, false, 1, false, 0, "", sofaHeaders, nil)
	big := append([]byte(nil), req[:22]...)
	binary.BigEndian.PutUint32(big[18:], MaxFrame+1)
	badHeader := append([]byte(nil), req...)
	binary.BigEndian.PutUint32(badHeader[22:], 1000) // a header key longer than the map
	crc := EnableCRC(AppendRequest(nil, true, 9, false, time.Second, "c", sofaHeaders, []byte("x")))
	crc[len(crc)-1] ^= 1
	for name, frame := range map[string][]byte{
		"bad protocol byte":     {0x07, 1, 0, 1},
		"oversized content":     big,
		"truncated header map":  badHeader,
		"CRC mismatch":          crc,
		"unknown command":       {protoV1, typeRequest, 0, 9, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"request with resp cmd": {protoV1, typeRequest, 0, cmdResponse, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		var f xprotocol.Frame
		if _, err := c.Decode(frame, &f); !errors.Is(err, xprotocol.ErrFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c.Match([]byte("GET / HTTP/1.1\r\n")) != xprotocol.NoMatch || c.Match([]byte{0xda, 0xbb}) != xprotocol.NoMatch {
		t.Fatal("matched another protocol")
	}
}

func TestErrorResponses(t *testing.T) {
	c := Codec{}
	for _, ver := range []bool{false, true} {
		req := AppendRequest(nil, ver, 42, false, 0, "", sofaHeaders, nil)
		var f xprotocol.Frame
		c.Decode(req, &f)
		for httpStatus, want := range map[int]uint32{404: StatusNoProcessor, 503: StatusThreadpoolBusy, 504: StatusTimeout, 502: StatusConnectionClosed, 500: StatusError} {
			resp := c.AppendError(nil, &f, httpStatus, "no healthy upstream")
			var r xprotocol.Frame
			if n, err := c.Decode(resp, &r); err != nil || n != len(resp) {
				t.Fatalf("v2=%v %d: %v", ver, httpStatus, err)
			}
			if r.Kind != xprotocol.Response || r.ID != 42 || r.Status != want || resp[0] != req[0] {
				t.Fatalf("v2=%v %d: %v id=%d status=%d", ver, httpStatus, r.Kind, r.ID, r.Status)
			}
			if string(r.Headers.Get("proxylab-error")) != "no healthy upstream" {
				t.Fatalf("message %q", r.Headers.Get("proxylab-error"))
			}
			if back := c.HTTPStatus(&r); httpStatus != 500 && back != httpStatus {
				t.Fatalf("%d maps back to %d", httpStatus, back)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendRequest(nil, false, 7, false, time.Second, "c", sofaHeaders, []byte("body")))
	f.Add(EnableCRC(AppendRequest(nil, true, 7, true, time.Second, "c", sofaHeaders, []byte("body"))))
	f.Add(AppendResponse(nil, 7, 0, "", []byte("ok")))
	f.Fuzz(func(t *testing.T, p []byte) {
		c := Codec{}
		var fr xprotocol.Frame
		n, err := c.Decode(p, &fr)
		if err != nil || n == 0 {
			return
		}
		if n > len(p) || !bytes.Equal(fr.Raw, p[:n]) {
			t.Fatalf("frame of %d bytes from %d", n, len(p))
		}
		// A decoded frame survives an ID rewrite.
		raw := append([]byte(nil), fr.Raw...)
		c.SetID(raw, 5)
		if m, err := c.Decode(raw, &fr); err != nil || m != n || fr.ID != 5 {
			t.Fatalf("after SetID: %d %v %d", m, err, fr.ID)
		}
	})
}
