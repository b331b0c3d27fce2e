//go:build !linux

package main

func registerPlatformBuiltins() {}
