package server

import "errors"

// ErrApplying is returned by BlockApply while an Apply runs.
var ErrApplying = errors.New("server: a reload is being applied")

// BlockApply makes every Apply from now on fail with reason (a hot upgrade
// hands this process's sockets over: a reload then would change what was
// passed); an empty reason lifts the block. Setting a block fails with
// ErrApplying, without waiting, while an Apply runs. Safe from any
// goroutine.
func (s *Server) BlockApply(reason string) error {
	if reason == "" {
		s.live.applyMu.Lock()
		s.live.blocked = ""
		s.live.applyMu.Unlock()
		return nil
	}
	if !s.live.applyMu.TryLock() {
		return ErrApplying
	}
	s.live.blocked = reason
	s.live.applyMu.Unlock()
	return nil
}
