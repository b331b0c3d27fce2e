//go:build !linux

package lab

import "testing"

func becomeSubreaper(*testing.T)     {}
func noLeftovers(*testing.T, string) {}
