package dubbo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/proxylab/proxylab/core/protocol/xprotocol"
)

// hessianBody encodes a request body the way Dubbo clients do, with the
// reference hessian2 implementation.
func hessianBody(t testing.TB, service, version, method string, args ...any) []byte {
	e := hessian.NewEncoder()
	for _, v := range []any{"2.0.2", service, version, method, "Ljava/lang/String;"} {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range args {
		e.Encode(a)
	}
	e.Encode(map[any]any{"path": service, "interface": service, "timeout": "3000"})
	return e.Buffer()
}

func TestDecodeRequestsAgainstHessian2(t *testing.T) {
	c := Codec{}
	long := strings.Repeat("com.example.very.long.package.name.", 40) + "Service" // > 1024 chars: chunked encodings
	for _, tc := range []struct {
		name, service, version, method string
		twoWay                         bool
	}{
		{"short fields", "org.apache.dubbo.demo.DemoService", "1.0.0", "sayHello", true},
		{"oneway", "org.apache.dubbo.demo.DemoService", "", "notify", false},
		{"long service name", long, "2.3.4", "m", true},
		{"non-ASCII method", "svc.Greeter", "1", "grüßen😀", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := AppendRequest(nil, 1<<40, tc.twoWay, hessianBody(t, tc.service, tc.version, tc.method, "world", int32(7)))
			if c.Match(frame) != xprotocol.Match || c.Match(frame[:1]) != xprotocol.NeedMore {
				t.Fatal("match")
			}
			var f xprotocol.Frame
			for i := 0; i < len(frame); i += 7 {
				if n, err := c.Decode(frame[:i], &f); n != 0 || err != nil {
					t.Fatalf("prefix %d: %d %v", i, n, err)
				}
			}
			n, err := c.Decode(frame, &f)
			if err != nil || n != len(frame) {
				t.Fatalf("%d %v", n, err)
			}
			wantKind := xprotocol.Request
			if !tc.twoWay {
				wantKind = xprotocol.Oneway
			}
			if f.Kind != wantKind || f.ID != 1<<40 {
				t.Fatalf("%v %d", f.Kind, f.ID)
			}
			if string(f.Headers.Get(xprotocol.FieldService)) != tc.service || string(f.Headers.Get(xprotocol.FieldMethod)) != tc.method ||
				string(f.Headers.Get(xprotocol.FieldVersion)) != tc.version {
				t.Fatalf("routing fields %q", f.Headers.Fields)
			}
		})
	}
}

func TestHessianStringsRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", strings.Repeat("x", 31), strings.Repeat("y", 32), strings.Repeat("z", 1023), strings.Repeat("w", 1024), "😀" + strings.Repeat("é", 40)} {
		b := AppendString(nil, s)
		// The reference decoder reads ours.
		v, err := hessian.NewDecoder(b).Decode()
		if err != nil || v.(string) != s {
			t.Fatalf("%d chars: reference decoder got %v", len(s), err)
		}
		// And we read the reference encoder's.
		e := hessian.NewEncoder()
		e.Encode(s)
		got, rest, err := readString(e.Buffer())
		if err != nil || string(got) != s || len(rest) != 0 {
			t.Fatalf("%d chars: %v rest %d", len(s), err, len(rest))
		}
	}
}

func TestResponsesAndErrors(t *testing.T) {
	c := Codec{}
	var req xprotocol.Frame
	c.Decode(AppendRequest(nil, 99, true, hessianBody(t, "s", "1", "m")), &req)
	for httpStatus, want := range map[int]uint32{400: StatusBadRequest, 404: StatusServiceNotFound, 502: StatusBadResponse, 503: StatusThreadpoolExhausted, 504: StatusServerTimeout, 500: StatusServerError} {
		resp := c.AppendError(nil, &req, httpStatus, "no healthy upstream")
		var r xprotocol.Frame
		if n, err := c.Decode(resp, &r); err != nil || n != len(resp) || r.Kind != xprotocol.Response || r.ID != 99 || r.Status != want {
			t.Fatalf("%d: %v %v %d %d", httpStatus, err, r.Kind, r.ID, r.Status)
		}
		msg, err := hessian.NewDecoder(resp[headerLen:]).Decode()
		if err != nil || msg != "no healthy upstream" {
			t.Fatalf("body %v %v", msg, err)
		}
		if back := c.HTTPStatus(&r); httpStatus != 500 && back != httpStatus {
			t.Fatalf("%d maps back to %d", httpStatus, back)
		}
	}
	hb := c.AppendHeartbeat(nil, 5)
	var f xprotocol.Frame
	if c.Decode(hb, &f); f.Kind != xprotocol.Heartbeat || f.ID != 5 {
		t.Fatalf("heartbeat %v", f.Kind)
	}
	reply := c.AppendHeartbeatReply(nil, &f)
	if c.Decode(reply, &f); f.Kind != xprotocol.HeartbeatReply || f.ID != 5 || f.Status != StatusOK {
		t.Fatalf("heartbeat reply %v", f.Kind)
	}
	frame := AppendRequest(nil, 1, true, []byte{0x1f, 'a'})
	c.SetID(frame, 77)
	if c.Decode(frame, &f); f.ID != 77 {
		t.Fatal("SetID")
	}
}

func TestDecodeErrors(t *testing.T) {
	c := Codec{}
	big := appendFrame(nil, flagRequest|flagTwoWay|hessian2, 0, 1, nil)
	binary.BigEndian.PutUint32(big[12:], MaxFrame+1)
	for name, frame := range map[string][]byte{
		"bad magic":         {0xda, 0xbc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"oversized body":    big,
		"body not a string": AppendRequest(nil, 1, true, []byte{0x90}),
		"truncated string":  AppendRequest(nil, 1, true, []byte{0x1f, 'a'}),
		"truncated chunk":   AppendRequest(nil, 1, true, []byte{'R', 0, 1, 'a'}),
	} {
		var f xprotocol.Frame
		if _, err := c.Decode(frame, &f); !errors.Is(err, xprotocol.ErrFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendRequest(nil, 1, true, hessianBody(f, "org.apache.dubbo.demo.DemoService", "1.0.0", "sayHello", "x")))
	f.Add(AppendResponse(nil, 1, StatusOK, []byte{0x91, 0x05, 'h', 'e', 'l', 'l', 'o'}))
	f.Add(Codec{}.AppendHeartbeat(nil, 1))
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
	})
}
