package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// rawClient speaks HTTP/1.1 or h2c and leaves Content-Encoding alone.
func rawClient(h2 bool) *http.Client {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Protocols: &p, DisableCompression: true}}
}

// decoder reads an encoded stream incrementally.
func decoder(t *testing.T, enc string, r io.Reader) io.Reader {
	t.Helper()
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	case "zstd":
		d, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
	return r
}

// TestCompressorFilter: responses come back compressed byte-exact in each
// encoding over HTTP/1.1 and HTTP/2 on every transport; the first block
// reaches the client while the upstream still holds the rest of its body
// (streaming, nothing buffered whole); small, non-200 and already encoded
// responses pass as they are.
func TestCompressorFilter(t *testing.T) {
	rnd := rand.New(rand.NewSource(7))
	var sb strings.Builder
	for sb.Len() < 200<<10 {
		fmt.Fprintf(&sb, "line %d: %x\n", sb.Len(), rnd.Int63n(1<<20))
	}
	big := sb.String()
	first := big[:16<<10]
	filters := `- name: compressor
  typed_config:
    encodings: [{name: zstd}, {name: br, level: 4}, {name: gzip}]`
	forEachTransport(t, func(t *testing.T, tr string) {
		release := make(chan struct{}, 16)
		up := startH2CUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/stream":
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, first)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-time.After(15 * time.Second):
				}
				io.WriteString(w, big[len(first):])
			case "/small":
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "small")
			case "/404":
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(404)
				io.WriteString(w, strings.Repeat("missing ", 100))
			case "/encoded":
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Encoding", "br")
				io.WriteString(w, strings.Repeat("pretend ", 100))
			default:
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				io.WriteString(w, big)
			}
		}))
		p := startProxy(t, filterConfig(tr, filters, "- {prefix: /, cluster: up}", "http1", up.addr))
		base := "http://" + p.addr("http")
		for _, h2 := range []bool{false, true} {
			c := rawClient(h2)
			for _, enc := range []string{"gzip", "br", "zstd"} {
				name := fmt.Sprintf("h2=%v/%s", h2, enc)
				// Whole body, with Content-Length from the upstream.
				req, _ := http.NewRequest("GET", base+"/json", nil)
				req.Header.Set("Accept-Encoding", enc+", identity;q=0.5")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if resp.Header.Get("Content-Encoding") != enc || resp.Header.Get("Vary") != "Accept-Encoding" || resp.ContentLength != -1 {
					t.Fatalf("%s: head %d %v (length %d)", name, resp.StatusCode, resp.Header, resp.ContentLength)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got, err := io.ReadAll(decoder(t, enc, bytes.NewReader(raw)))
				if err != nil || string(got) != big {
					t.Fatalf("%s: decoded %d bytes (%v), want %d byte-exact", name, len(got), err, len(big))
				}
				if len(raw) >= len(big)/2 {
					t.Fatalf("%s: %d compressed bytes for %d", name, len(raw), len(big))
				}
				// Streaming: the first piece decodes before the rest exists.
				req, _ = http.NewRequest("GET", base+"/stream", nil)
				req.Header.Set("Accept-Encoding", enc)
				resp, err = c.Do(req)
				if err != nil {
					t.Fatalf("%s stream: %v", name, err)
				}
				dr := decoder(t, enc, resp.Body)
				head := make([]byte, len(first))
				if _, err := io.ReadFull(dr, head); err != nil || string(head) != first {
					t.Fatalf("%s stream: first piece not delivered before the upstream finished: %v", name, err)
				}
				release <- struct{}{}
				rest, err := io.ReadAll(dr)
				resp.Body.Close()
				if err != nil || string(head)+string(rest) != big {
					t.Fatalf("%s stream: %v, %d bytes", name, err, len(head)+len(rest))
				}
			}
			// Server preference among what the client accepts.
			for ae, want := range map[string]string{"gzip, br": "br", "*": "zstd", "zstd;q=0, *;q=0.1": "br", "identity": ""} {
				req, _ := http.NewRequest("GET", base+"/json", nil)
				req.Header.Set("Accept-Encoding", ae)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if got := resp.Header.Get("Content-Encoding"); got != want {
					t.Fatalf("h2=%v Accept-Encoding %q: %q, want %q", h2, ae, got, want)
				}
			}
			for path, want := range map[string]string{"/small": "small", "/404": strings.Repeat("missing ", 100), "/encoded": strings.Repeat("pretend ", 100)} {
				req, _ := http.NewRequest("GET", base+path, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want || (path != "/encoded" && resp.Header.Get("Content-Encoding") != "") {
					t.Fatalf("h2=%v %s: %q %v", h2, path, b, resp.Header)
				}
			}
		}
		lbl := map[string]string{"side": "listener", "name": "http", "encoding": "gzip"}
		if v := adminMetric(t, p, "proxylab_compressor_compressed_total", lbl); v != 4 {
			t.Fatalf("gzip responses compressed %v, want 4", v)
		}
	})
}
