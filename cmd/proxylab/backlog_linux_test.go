package main

import (
	"net"
	"syscall"
)

// relistenBacklog0 calls listen(2) again on ln's socket with backlog 0, which
// Linux accepts as a way to shrink the accept queue.
func relistenBacklog0(ln net.Listener) error {
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	err = rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) })
	if err != nil {
		return err
	}
	return lerr
}
