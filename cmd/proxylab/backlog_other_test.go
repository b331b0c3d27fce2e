//go:build !linux

package main

import (
	"errors"
	"net"
)

// relistenBacklog0 is Linux-only (listen(2) again on the fd); elsewhere the
// tests that need a full accept queue skip.
func relistenBacklog0(net.Listener) error {
	return errors.New("shrinking a listen backlog is implemented for Linux only")
}
