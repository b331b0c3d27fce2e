package compressor

import (
	"fmt"
	"strings"

	"github.com/proxylab/proxylab/foundation/registry"
)

// Config is the filter's block (after Envoy's compressor filter with its
// response_direction_config.common_config flattened, and one filter serving
// several encodings instead of one filter per library).
type Config struct {
	// Encodings in the server's order of preference; the first one the
	// client accepts (q > 0) is used.
	Encodings []EncodingConfig `yaml:"encodings"`
	// MinContentLength: a response with a smaller Content-Length is sent
	// as is (one without Content-Length is compressed).
	MinContentLength int64 `yaml:"min_content_length"`
	// ContentType lists the media types compressed (parameters ignored); a
	// response without Content-Type is compressed, as in Envoy.
	ContentType []string `yaml:"content_type"`
	// DisableOnETagHeader leaves responses with an ETag alone; otherwise a
	// strong ETag is made weak (W/) on compressed responses.
	DisableOnETagHeader bool `yaml:"disable_on_etag_header"`
	// RemoveAcceptEncodingHeader drops Accept-Encoding from the request so
	// the upstream does not compress itself.
	RemoveAcceptEncodingHeader bool `yaml:"remove_accept_encoding_header"`
}

// EncodingConfig is one content coding: gzip (level 1-9, default 6), br
// (quality 0-11, default 3) or zstd (level 1-22, default 3); Envoy's
// library defaults.
type EncodingConfig struct {
	Name  string `yaml:"name"`
	Level *int   `yaml:"level"`
}

// defaultContentTypes are Envoy's.
var defaultContentTypes = []string{
	"text/html", "text/plain", "text/css", "application/javascript", "application/x-javascript",
	"text/javascript", "text/x-javascript", "text/ecmascript", "text/js", "text/jscript", "text/x-js",
	"application/ecmascript", "application/x-json", "application/xml", "application/json",
	"image/svg+xml", "text/xml", "application/xhtml+xml",
}

// SetDefaults implements registry.Defaulter.
func (c *Config) SetDefaults() {
	c.MinContentLength = 30
}

// Validate implements registry.Validator.
func (c *Config) Validate(path string) []error {
	var errs []error
	if len(c.Encodings) == 0 {
		c.Encodings = []EncodingConfig{{Name: "zstd"}, {Name: "br"}, {Name: "gzip"}}
	}
	if len(c.ContentType) == 0 {
		c.ContentType = defaultContentTypes
	}
	for i, t := range c.ContentType {
		c.ContentType[i] = strings.ToLower(strings.TrimSpace(t))
	}
	if c.MinContentLength < 0 {
		errs = append(errs, registry.Errorf(path+".min_content_length", "must not be negative"))
	}
	seen := map[string]bool{}
	for i := range c.Encodings {
		e := &c.Encodings[i]
		p := fmt.Sprintf("%s.encodings[%d]", path, i)
		lo, hi, def := 0, 0, 0
		switch e.Name {
		case "gzip":
			lo, hi, def = 1, 9, 6
		case "br":
			lo, hi, def = 0, 11, 3
		case "zstd":
			lo, hi, def = 1, 22, 3
		default:
			errs = append(errs, registry.Errorf(p+".name", "must be gzip, br or zstd, got %q", e.Name))
			continue
		}
		if seen[e.Name] {
			errs = append(errs, registry.Errorf(p+".name", "%s listed twice", e.Name))
		}
		seen[e.Name] = true
		if e.Level == nil {
			e.Level = &def
		} else if *e.Level < lo || *e.Level > hi {
			errs = append(errs, registry.Errorf(p+".level", "must be %d to %d for %s", lo, hi, e.Name))
		}
	}
	return errs
}
