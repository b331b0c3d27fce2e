package network

import (
	"sync"
	"sync/atomic"
)

// SessionLock is a session's lock with the work that runs under it before
// it is released: deferred flushes (queued by the holder) and posted work
// (queued by anyone, without blocking). Conn uses one; so may any other
// Session. The zero value is unlocked and ready.
//
// Post is how a goroutine holding one session hands work to another
// session without waiting for it (two sessions are never waited for
// together): the work runs under the target session now if it is free,
// else at its holder's Unlock, on the holder's goroutine — no goroutine is
// started. Unlock looks for posted work after releasing the lock, and a
// poster sets its flag before trying the lock, so work posted while the
// lock is held is always picked up by whoever held it.
type SessionLock struct {
	mu       sync.Mutex
	flushers []Flusher // guarded by mu

	posted atomic.Bool // posts is not empty
	postMu sync.Mutex
	posts  []Flusher // guarded by postMu
}

var _ Session = (*SessionLock)(nil)

// Lock takes the session.
func (s *SessionLock) Lock() { s.mu.Lock() }

// TryLock takes the session if it is free, without blocking.
func (s *SessionLock) TryLock() bool { return s.mu.TryLock() }

// Unlock runs the deferred flushes, releases the session, then runs work
// posted meanwhile (taking the session again for it when it is free).
func (s *SessionLock) Unlock() {
	s.flush()
	s.mu.Unlock()
	if s.posted.Load() {
		s.runPosted()
	}
}

// DeferFlush queues f to run at Unlock. Call with the lock held.
func (s *SessionLock) DeferFlush(f Flusher) { s.flushers = append(s.flushers, f) }

// Post runs f under the session, from any goroutine and without blocking:
// at once when the session is free, otherwise at its holder's Unlock. The
// caller may hold another session. Posted work runs in order, like a
// deferred flush (it may DeferFlush more).
func (s *SessionLock) Post(f Flusher) {
	s.postMu.Lock()
	s.posts = append(s.posts, f)
	s.posted.Store(true)
	s.postMu.Unlock()
	s.runPosted()
}

// flush runs the deferred flushes, the last queued first. Lock held.
func (s *SessionLock) flush() {
	for len(s.flushers) > 0 {
		f := s.flushers[len(s.flushers)-1]
		s.flushers[len(s.flushers)-1] = nil
		s.flushers = s.flushers[:len(s.flushers)-1]
		f.Flush()
	}
}

// runPosted runs posted work while there is some and the session is free;
// when it is not, its holder runs the work at Unlock.
func (s *SessionLock) runPosted() {
	for s.posted.Load() && s.mu.TryLock() {
		s.postMu.Lock()
		posts := s.posts
		s.posts = nil
		s.posted.Store(false)
		s.postMu.Unlock()
		for i, f := range posts {
			posts[i] = nil
			f.Flush()
		}
		s.flush()
		s.mu.Unlock()
	}
}
