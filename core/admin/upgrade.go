package admin

import (
	"errors"
	"fmt"
	"syscall"
)

// ListenerFD is the admin listener's socket (a hot upgrade passes it on);
// valid until Close.
func (a *Server) ListenerFD() (int, error) {
	sc, ok := a.ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("admin: the listener has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("admin: %w", err)
	}
	return fd, nil
}
