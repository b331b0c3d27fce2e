package server

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/core/filter"
)

// closeCounted is a filter factory holding a resource: it records Close.
type closeCounted struct {
	filter.PassThrough
	closed atomic.Bool
}

func (f *closeCounted) NewFilter(filter.Stream) filter.Filter { return f }
func (f *closeCounted) Close() error                          { f.closed.Store(true); return nil }

var (
	closeCountedMu   sync.Mutex
	closeCountedMade []*closeCounted
)

func init() {
	filter.Register(filter.Module{Name: "test_closecounted", Kinds: filter.HTTP,
		Decode: func(*yaml.Node, string) (filter.Factory, []error) {
			f := &closeCounted{}
			closeCountedMu.Lock()
			closeCountedMade = append(closeCountedMade, f)
			closeCountedMu.Unlock()
			return f, nil
		}})
}

func lastCloseCounted(t *testing.T) *closeCounted {
	t.Helper()
	closeCountedMu.Lock()
	defer closeCountedMu.Unlock()
	if len(closeCountedMade) == 0 {
		t.Fatal("no factory decoded")
	}
	return closeCountedMade[len(closeCountedMade)-1]
}

// TestApplyClosesUnusedFilterFactories: a reload that keeps a listener
// closes the factories its new config decoded (the running ones stay, and
// the config in force names them); a changed listener's old factories are
// closed when its connections are done.
func TestApplyClosesUnusedFilterFactories(t *testing.T) {
	base := reloadCfg{Addr: freeAddr(t), HostsA: []string{namedUpstream(t, "A")}, DrainAfter: "200ms",
		Extra: "{http_filters: [{name: test_closecounted}]}"}
	s := startServer(t, base.parse(t))
	running := lastCloseCounted(t)

	if err := s.Apply(base.parse(t)); err != nil {
		t.Fatal(err)
	}
	if unused := lastCloseCounted(t); unused == running || !unused.closed.Load() {
		t.Fatal("the unchanged listener's newly decoded factory was not closed")
	}
	if running.closed.Load() {
		t.Fatal("the running factory was closed")
	}
	if got := s.Config().Listeners[0].HTTP.HTTPFilters[0].Factory; got != running {
		t.Fatal("the config in force does not name the running factory")
	}
	if body := getOnce(t, s.Listeners()[0].Addr().String(), "/"); body != "A" {
		t.Fatalf("after the reload: %q", body)
	}

	changed := base
	changed.Extra = "{idle_timeout: 61s, http_filters: [{name: test_closecounted}]}"
	if err := s.Apply(changed.parse(t)); err != nil {
		t.Fatal(err)
	}
	next := lastCloseCounted(t)
	deadline := time.Now().Add(10 * time.Second)
	for !running.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the replaced listener's factory was never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next.closed.Load() {
		t.Fatal("the new listener's factory was closed")
	}
}
