//go:build !linux

package ktls

func hostSupports() (bool, string) { return false, "kernel TLS is Linux only" }
