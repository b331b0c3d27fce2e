//go:build !linux

package main

import "errors"

func pinCPUs([]int) ([]int, error) {
	return nil, errors.New("CPU pinning is only supported on Linux")
}

// affinity is unknown here: the start-up line says "all".
func affinity() ([]int, error) { return nil, nil }
