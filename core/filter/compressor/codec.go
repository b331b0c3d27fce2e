package compressor

import (
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// writer is what each library's streaming compressor offers.
type writer interface {
	io.Writer
	Flush() error
	Close() error
	Reset(io.Writer)
}

// zstdWriter adapts zstd.Encoder's Reset.
type zstdWriter struct{ *zstd.Encoder }

func (z zstdWriter) Reset(w io.Writer) { z.Encoder.Reset(w) }

// encoding is one configured content coding with its pool of writers: a
// stream takes a writer for its response and gives it back at the end, so
// the big compressor state is reused, not allocated per response.
type encoding struct {
	name  string
	token []byte    // name, for the Content-Encoding value
	pool  sync.Pool // writer
	stats encodingStats
}

func newEncoding(name string, level int) *encoding {
	e := &encoding{name: name, token: []byte(name)}
	switch name {
	case "gzip":
		e.pool.New = func() any {
			w, _ := gzip.NewWriterLevel(io.Discard, level) // level checked by Validate
			return w
		}
	case "br":
		e.pool.New = func() any { return brotli.NewWriterLevel(io.Discard, level) }
	case "zstd":
		e.pool.New = func() any {
			// One goroutine-free encoder per stream; a 1 MiB window keeps
			// its state small (browsers accept up to 8 MiB).
			z, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithWindowSize(1<<20))
			return zstdWriter{z}
		}
	}
	return e
}

func (e *encoding) get(dst io.Writer) writer {
	w := e.pool.Get().(writer)
	w.Reset(dst)
	return w
}

func (e *encoding) put(w writer) {
	w.Reset(io.Discard)
	e.pool.Put(w)
}

// sink collects a writer's output for one call; its slice is reused.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}
