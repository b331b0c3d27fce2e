package offload

import (
	"fmt"
	"os"
	"strings"
)

// ByName picks a value (a certificate) by TLS server name: an exact name,
// then a wildcard one label up, then the default (the first added).
type ByName[T any] struct {
	def   T
	set   bool
	exact map[string]T
	wild  map[string]T // "example.com" for *.example.com
}

// Add registers v under names (DNS names, possibly "*." wildcards); the
// first value added is the default, and a name keeps its first value.
func (b *ByName[T]) Add(v T, names []string) {
	if !b.set {
		b.def, b.set = v, true
		b.exact, b.wild = map[string]T{}, map[string]T{}
	}
	for _, name := range names {
		name = strings.ToLower(name)
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			if _, dup := b.wild[rest]; !dup {
				b.wild[rest] = v
			}
		} else if _, dup := b.exact[name]; !dup {
			b.exact[name] = v
		}
	}
}

// Pick chooses for sni.
func (b *ByName[T]) Pick(sni string) T {
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	if v, ok := b.exact[sni]; ok {
		return v
	}
	if i := strings.IndexByte(sni, '.'); i > 0 {
		if v, ok := b.wild[sni[i+1:]]; ok {
			return v
		}
	}
	return b.def
}

// FileStamp summarises files' sizes and times, to notice changes.
func FileStamp(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:missing;", p)
		}
	}
	return b.String()
}

// Paths lists every file of the entries, the engine options' included.
func Paths(files []CertFiles) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.CertFile, f.KeyFile)
		if fl, ok := f.Options.(Filer); ok {
			out = append(out, fl.Files()...)
		}
	}
	return out
}
