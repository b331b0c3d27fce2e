package protocol

import "testing"

// TestForbiddenTrailer: one list for every codec, case-insensitive, for
// strings (HTTP/2's lowercase names) and bytes alike.
func TestForbiddenTrailer(t *testing.T) {
	if !ForbiddenTrailer([]byte("Content-Length")) || ForbiddenTrailer([]byte("grpc-status")) {
		t.Error("[]byte form disagrees")
	}
	if n := testing.AllocsPerRun(100, func() { ForbiddenTrailer("x-checksum") }); n != 0 {
		t.Errorf("%v allocs", n)
	}
	for _, n := range []string{"Content-Length", "transfer-encoding", "HOST", "te", "Trailer", "Connection",
		"Keep-Alive", "Upgrade", "Content-Type", "Authorization", "Set-Cookie", "If-None-Match", ":path"} {
		if !ForbiddenTrailer(n) {
			t.Errorf("%s allowed in trailers", n)
		}
	}
	for _, n := range []string{"grpc-status", "Grpc-Message", "X-Checksum", "Server-Timing", "Content-MD5", ""} {
		if ForbiddenTrailer(n) {
			t.Errorf("%s refused in trailers", n)
		}
	}
}
