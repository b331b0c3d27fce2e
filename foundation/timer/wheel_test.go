package timer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fn adapts a func to Expirer for tests.
type fn func()

func (f fn) Expire() { f() }

func TestFiresNotEarlyNotMuchLate(t *testing.T) {
	w := New(5 * time.Millisecond)
	for _, d := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 3 * time.Second} {
		fired := make(chan time.Time, 1)
		var tm Timer
		tm.Init(w, fn(func() { fired <- time.Now() }))
		start := time.Now()
		tm.Reset(d)
		at := <-fired
		if got := at.Sub(start); got < d || got > d+100*time.Millisecond {
			t.Errorf("%v timer fired after %v", d, got)
		}
	}
}

func TestStopAndReset(t *testing.T) {
	w := New(5 * time.Millisecond)
	var n atomic.Int32
	var tm Timer
	tm.Init(w, fn(func() { n.Add(1) }))
	tm.Reset(20 * time.Millisecond)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	tm.Reset(20 * time.Millisecond)
	tm.Reset(60 * time.Millisecond) // replaces, does not add
	time.Sleep(40 * time.Millisecond)
	if n.Load() != 0 {
		t.Fatal("replaced schedule fired")
	}
	time.Sleep(80 * time.Millisecond)
	if n.Load() != 1 {
		t.Fatalf("fired %d times, want 1", n.Load())
	}
	if tm.Stop() {
		t.Fatal("Stop after firing returned true")
	}
	if w.Pending() != 0 {
		t.Fatalf("pending %d", w.Pending())
	}
}

func TestManyTimersFireOnceEach(t *testing.T) {
	w := New(time.Millisecond)
	const n = 20000
	var wg sync.WaitGroup
	var fired atomic.Int32
	timers := make([]Timer, n)
	wg.Add(n)
	for i := range timers {
		timers[i].Init(w, fn(func() { fired.Add(1); wg.Done() }))
		timers[i].Reset(time.Duration(i%700) * time.Millisecond) // wraps the wheel
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d of %d fired", fired.Load(), n)
	}
	time.Sleep(20 * time.Millisecond)
	if fired.Load() != n {
		t.Fatalf("fired %d, want %d", fired.Load(), n)
	}
}

func BenchmarkResetStop(b *testing.B) {
	w := New(10 * time.Millisecond)
	var tm Timer
	tm.Init(w, fn(func() {}))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tm.Reset(time.Minute)
		tm.Stop()
	}
}

// TestNeverEarly schedules at every phase of a tick and checks none fires
// before its deadline.
func TestNeverEarly(t *testing.T) {
	w := New(10 * time.Millisecond)
	const n = 50
	var wg sync.WaitGroup
	early := make(chan time.Duration, n)
	for i := 0; i < n; i++ {
		time.Sleep(time.Millisecond) // spread over the tick's phases
		wg.Add(1)
		start := time.Now()
		d := 25 * time.Millisecond
		tm := new(Timer)
		tm.Init(w, fn(func() {
			if got := time.Since(start); got < d {
				early <- got
			}
			wg.Done()
		}))
		tm.Reset(d)
	}
	wg.Wait()
	close(early)
	for got := range early {
		t.Errorf("25ms timer fired after %v", got)
	}
}
