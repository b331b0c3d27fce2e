package network

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type flushFunc func()

func (f flushFunc) Flush() { f() }

// TestSessionLockPost: posted work runs under the session, at once when it
// is free, else on the holder's goroutine before its Unlock returns, with
// the deferred flushes it queues; the order of posts is kept.
func TestSessionLockPost(t *testing.T) {
	cases := []struct {
		name string
		held bool
	}{
		{"free session: at once", false},
		{"held session: at its Unlock", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s SessionLock
			var order []string
			underLock := true
			if tc.held {
				s.Lock()
			}
			posted := make(chan struct{})
			go func() { // another goroutine posts without blocking
				defer close(posted)
				for _, name := range []string{"a", "b"} {
					s.Post(flushFunc(func() {
						underLock = underLock && !s.TryLock()
						order = append(order, name)
						s.DeferFlush(flushFunc(func() { order = append(order, name+"-flush") }))
					}))
				}
			}()
			select {
			case <-posted:
			case <-time.After(5 * time.Second):
				t.Fatal("Post blocked")
			}
			if tc.held {
				if len(order) != 0 {
					t.Fatalf("ran while the session was held: %v", order)
				}
				s.Unlock()
			}
			want := []string{"a", "a-flush", "b", "b-flush"}
			if tc.held {
				want = []string{"a", "b", "b-flush", "a-flush"} // one batch, flushes last queued first
			}
			if len(order) != len(want) || !underLock {
				t.Fatalf("order %v (want %v), under the lock: %v", order, want, underLock)
			}
			for i := range want {
				if order[i] != want[i] {
					t.Fatalf("order %v, want %v", order, want)
				}
			}
			if !s.TryLock() {
				t.Fatal("session left locked")
			}
		})
	}
}

// TestSessionLockPostNotLost: posts racing with holders are never lost
// (each runs exactly once, under the session).
func TestSessionLockPostNotLost(t *testing.T) {
	var s SessionLock
	const holders, posters, each = 4, 4, 2000
	var ran, inside atomic.Int64
	var wg sync.WaitGroup
	for range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				s.Lock()
				inside.Add(1)
				inside.Add(-1)
				s.Unlock()
			}
		}()
	}
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				s.Post(flushFunc(func() {
					if inside.Add(1) != 1 {
						t.Error("posted work ran outside the session")
					}
					inside.Add(-1)
					ran.Add(1)
				}))
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for ran.Load() != posters*each && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := ran.Load(); got != posters*each {
		t.Fatalf("%d of %d posted runs", got, posters*each)
	}
}
