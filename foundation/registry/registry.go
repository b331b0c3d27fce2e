// Package registry is the by-name registry transports, crypto engines and
// load-balancing policies share: registration panics on a duplicate name,
// lookups are safe from any goroutine. A tiny leaf package every layer may
// import.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps names to values of type T (usually factories).
type Registry[T any] struct {
	kind string // for messages: "transport", "engine", …
	mu   sync.RWMutex
	m    map[string]T
}

// New returns an empty registry; kind names what it holds in panics.
func New[T any](kind string) *Registry[T] {
	return &Registry[T]{kind: kind, m: map[string]T{}}
}

// Register adds name; a name registered twice panics (a programming error
// in the binary's list of built-ins).
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("%s %q registered twice", r.kind, name))
	}
	r.m[name] = v
}

// Get returns the value registered under name.
func (r *Registry[T]) Get(name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.m[name]
	return v, ok
}

// Names lists the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
