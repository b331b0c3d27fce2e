// Package timer is a hashed timing wheel shared by every connection: O(1)
// schedule and cancel, no allocation per schedule, and one goroutine that
// ticks only while a timer is pending. Connections embed a Timer instead of
// holding a runtime timer each.
package timer

import (
	"sync"
	"time"
)

const slots = 512 // a power of two

// Wheel fires timers with Resolution granularity (they fire late by at most
// one tick, never early).
type Wheel struct {
	res time.Duration

	mu      sync.Mutex
	slot    [slots]*Timer // intrusive lists
	tick    int64         // ticks elapsed since start
	start   time.Time
	pending int
	running bool
}

// New returns a wheel; resolution <= 0 means 10ms.
func New(resolution time.Duration) *Wheel {
	if resolution <= 0 {
		resolution = 10 * time.Millisecond
	}
	return &Wheel{res: resolution, start: time.Now()}
}

// Resolution is the tick length.
func (w *Wheel) Resolution() time.Duration { return w.res }

// Expirer is what a Timer calls when it fires, on the wheel's goroutine; it
// must not block. (An interface rather than a func value: binding a method
// to a func allocates, and timers are embedded per connection.)
type Expirer interface {
	Expire()
}

// Timer is one schedulable callback; embed it and Init it once.
type Timer struct {
	w          *Wheel
	e          Expirer
	prev, next *Timer
	at         int64 // tick at which it fires
	armed      bool
}

// Init binds t to w and e.
func (t *Timer) Init(w *Wheel, e Expirer) {
	t.w, t.e = w, e
}

// Reset schedules t to fire after d, replacing any earlier schedule.
func (t *Timer) Reset(d time.Duration) {
	w := t.w
	w.mu.Lock()
	if t.armed {
		w.unlink(t)
	}
	if !w.running && w.pending == 0 {
		// Idle wheel: nothing to scan between the last tick and now.
		w.tick = w.nowTick()
	}
	// Round the absolute deadline up to a tick boundary: never early.
	t.at = int64((time.Since(w.start) + d + w.res - 1) / w.res)
	if t.at <= w.tick {
		t.at = w.tick + 1
	}
	s := &w.slot[t.at&(slots-1)]
	t.next, t.prev = *s, nil
	if *s != nil {
		(*s).prev = t
	}
	*s = t
	t.armed = true
	w.pending++
	if !w.running {
		w.running = true
		go w.run()
	}
	w.mu.Unlock()
}

// Stop cancels t; it reports whether t was pending (false: it already fired
// or is firing, so the callback may still run).
func (t *Timer) Stop() bool {
	w := t.w
	if w == nil {
		return false
	}
	w.mu.Lock()
	was := t.armed
	if was {
		w.unlink(t)
	}
	w.mu.Unlock()
	return was
}

// Armed reports whether t is scheduled.
func (t *Timer) Armed() bool {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	return t.armed
}

func (w *Wheel) unlink(t *Timer) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		w.slot[t.at&(slots-1)] = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.prev, t.next, t.armed = nil, nil, false
	w.pending--
}

func (w *Wheel) nowTick() int64 { return int64(time.Since(w.start) / w.res) }

// Pending is the number of scheduled timers.
func (w *Wheel) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

func (w *Wheel) run() {
	tk := time.NewTicker(w.res)
	defer tk.Stop()
	var due []*Timer
	for range tk.C {
		w.mu.Lock()
		now := w.nowTick()
		for w.tick < now {
			w.tick++
			for t := w.slot[w.tick&(slots-1)]; t != nil; {
				next := t.next
				if t.at <= w.tick {
					w.unlink(t)
					due = append(due, t)
				}
				t = next
			}
		}
		idle := w.pending == 0
		if idle {
			w.running = false
		}
		w.mu.Unlock()
		for i, t := range due {
			t.e.Expire()
			due[i] = nil
		}
		due = due[:0]
		if idle {
			return
		}
	}
}
