//go:build !linux

package main

import "github.com/proxylab/proxylab/core/config"

func registerPlatformBuiltins() {}

// setCgroup: sockmap exists on Linux only.
func setCgroup(*config.Config, string) {}
