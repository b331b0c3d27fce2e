package proxy

import (
	"errors"
	"time"
)

// A stream has one timer (the connection's for HTTP/1, its own when
// multiplexed) armed for the earliest of its deadlines:
//
//	reqAt   request_timeout: from the head until the request is whole or
//	        the response starts → 408, flag DT
//	respAt  the route's response timeout: from the request's end until the
//	        response head → 504, flag UT
//	lastIO + idle
//	        (the route's idle_timeout, or the listener's) no bytes either way (Envoy's stream_idle_timeout) → 408 flag SI
//	        before the response started, a reset of both sides after
//
// Bytes only move lastIO forward (a clock read, no timer operation); when
// the timer fires early for an idle deadline that moved, it is re-armed.

// errStreamIdle is the reset reason of a stream idle past its timeout.
var errStreamIdle = errors.New("proxy: stream idle timeout")

// touch records bytes moving on the stream.
func (s *httpStream) touch() {
	if s.idle > 0 {
		s.lastIO = time.Now()
	}
}

// startTimers arms the stream's timer for a request whose head arrived
// (end: the request is whole already).
func (s *httpStream) startTimers(end bool) {
	cfg := s.cm.cfg
	s.idle = cfg.StreamIdle
	if s.route.IdleSet {
		s.idle = s.route.IdleTimeout
	}
	if s.idle > 0 || (!end && cfg.RequestTimeout > 0) {
		s.lastIO = time.Now()
		if !end && cfg.RequestTimeout > 0 && s.reqAt.IsZero() { // (set already if a filter held the head)
			s.reqAt = s.lastIO.Add(cfg.RequestTimeout)
		}
	}
	if end {
		s.armTimer()
		return
	}
	s.schedule()
}

// holdTimers arms the stream idle timeout and request_timeout for a request
// whose head a filter holds before the router saw it (a filter that never
// resumes must not hold the stream forever); forward's startTimers takes
// over when it is released.
func (s *httpStream) holdTimers(end bool) {
	cfg := s.cm.cfg
	s.idle = cfg.StreamIdle
	if s.route != nil && s.route.IdleSet {
		s.idle = s.route.IdleTimeout
	}
	now := time.Now()
	s.lastIO = now
	if !end && cfg.RequestTimeout > 0 {
		s.reqAt = now.Add(cfg.RequestTimeout)
	}
	if s.idle > 0 || !s.reqAt.IsZero() {
		s.schedule()
	}
}

// schedule arms the timer for the earliest deadline, or stops it.
func (s *httpStream) schedule() {
	next := s.respAt
	if !s.reqAt.IsZero() && (next.IsZero() || s.reqAt.Before(next)) {
		next = s.reqAt
	}
	if d := s.idle; d > 0 {
		if at := s.lastIO.Add(d); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if next.IsZero() {
		s.cm.disarm(s)
		return
	}
	s.cm.arm(s, max(time.Until(next), 0))
}

// onTimer runs whichever deadline passed, under the session.
func (s *httpStream) onTimer() {
	if s.done {
		return
	}
	now := time.Now()
	switch {
	case !s.respAt.IsZero() && !now.Before(s.respAt):
		s.respAt = time.Time{}
		if !s.up.gotHead {
			s.timedOut("upstream response timeout")
			return
		}
	case !s.reqAt.IsZero() && !now.Before(s.reqAt):
		if st := s.cm.cfg.Stats; st != nil {
			st.RqTimeout.Inc(s.cm.id)
		}
		enc := s.up.enc
		s.localReply(408, "DT", "request timeout")
		if enc != nil {
			enc.Reset()
		}
		return
	case s.idle > 0 && now.Sub(s.lastIO) >= s.idle:
		s.idleTimedOut()
		return
	}
	s.schedule()
}

// idleTimedOut ends a stream idle past its idle timeout: 408 if no response
// started, otherwise both sides are reset.
func (s *httpStream) idleTimedOut() {
	if st := s.cm.cfg.Stats; st != nil {
		st.RqIdleTimeout.Inc(s.cm.id)
	}
	enc := s.up.enc
	if !s.respStarted {
		s.localReply(408, "SI", "stream timeout")
	} else {
		s.flags = "SI"
		s.finish()
		resetDownstream(s.enc, errStreamIdle)
	}
	if enc != nil {
		enc.Reset()
	}
}
