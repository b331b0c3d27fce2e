package stream_test

import (
	"strings"
	"testing"

	h2p "github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/bolt"
	"github.com/proxylab/proxylab/core/protocol/xprotocol/dubbo"
	"github.com/proxylab/proxylab/core/stream"
	h1s "github.com/proxylab/proxylab/core/stream/http1"
	h2s "github.com/proxylab/proxylab/core/stream/http2"
	"github.com/proxylab/proxylab/core/stream/rpc"
)

// builtins is the binary's registration order (cmd/proxylab/builtins.go).
var builtins = []stream.Codec{h2s.Codec{}, rpc.Codec{Wire: bolt.Codec{}}, rpc.Codec{Wire: dubbo.Codec{}}, h1s.Codec{}}

// unsure is a codec whose detection always wants more bytes.
type unsure struct{ h1s.Codec }

func (unsure) Name() string               { return "unsure" }
func (unsure) Detect([]byte) stream.Match { return stream.NeedMore }

// TestDetect: ALPN decides first; then the first codec in order that
// matches, unless one before it still needs bytes (up to 64 held).
func TestDetect(t *testing.T) {
	boltReq := bolt.Codec{}.AppendHeartbeat(nil, 1)
	dubboReq := dubbo.Codec{}.AppendHeartbeat(nil, 1)
	for _, tc := range []struct {
		name, alpn string
		in         string
		want       string // codec name, "more" or "none"
	}{
		{"alpn h2 whatever the bytes", "h2", "GET / HTTP/1.1\r\n", "http2"},
		{"alpn http/1.1 whatever the bytes", "http/1.1", h2p.ClientPreface, "http1"},
		{"unknown alpn falls back to bytes", "spdy/3", h2p.ClientPreface, "http2"},
		{"h2c preface", "", h2p.ClientPreface + "\x00\x00", "http2"},
		{"prefix of the preface waits", "", "PRI * HTTP/2", "more"},
		{"PRI that is not the preface", "", "PRI / HTTP/1.1\r\n\r\n", "http1"},
		{"HTTP/1 request", "", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "http1"},
		{"one byte of a method", "", "G", "http1"},
		{"bolt", "", string(boltReq), "bolt"},
		{"bolt header cut short waits", "", string(boltReq[:2]), "more"},
		{"dubbo", "", string(dubboReq), "dubbo"},
		{"dubbo magic's first byte waits", "", string(dubboReq[:1]), "more"},
		{"garbage goes to the catch-all", "", "\x16\x03\x01\x00", "http1"},
		{"a codec never sure waits below 64 bytes", "", strings.Repeat("x", 63), "more"},
		{"and is passed over from 64 on", "", strings.Repeat("x", 64), "http1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := builtins
			if strings.HasPrefix(tc.in, "xxx") {
				cs = []stream.Codec{unsure{}, h1s.Codec{}}
			}
			i, m := stream.Detect(cs, tc.alpn, []byte(tc.in))
			got := map[stream.Match]string{stream.NeedMore: "more", stream.NoMatch: "none"}[m]
			if m == stream.Matched {
				got = cs[i].Name()
			}
			if got != tc.want {
				t.Fatalf("Detect(%q, %q) = %s (%d), want %s", tc.alpn, tc.in, got, i, tc.want)
			}
		})
	}
	// Without a catch-all codec, unknown bytes match nothing.
	if i, m := stream.Detect(builtins[:3], "", []byte("GET / HTTP/1.1\r\n")); m != stream.NoMatch || i != -1 {
		t.Fatalf("no catch-all: %d %v", i, m)
	}
}

// TestRegistry: registration order is kept (it is detection order) and a
// name registered twice panics.
func TestRegistry(t *testing.T) {
	for _, c := range builtins {
		stream.Register(c)
	}
	var names []string
	for _, c := range stream.Codecs() {
		names = append(names, c.Name())
	}
	if strings.Join(names, ",") != "http2,bolt,dubbo,http1" {
		t.Fatalf("order %v", names)
	}
	if c, ok := stream.Lookup("dubbo"); !ok || c.Carries() != "dubbo" {
		t.Fatalf("Lookup dubbo: %v %v", c, ok)
	}
	if _, ok := stream.Lookup("auto"); ok {
		t.Fatal("auto is not a codec")
	}
	defer func() {
		if msg := recover(); msg != `stream: codec "http1" registered twice` {
			t.Fatalf("duplicate: %v", msg)
		}
	}()
	stream.Register(h1s.Codec{})
}
