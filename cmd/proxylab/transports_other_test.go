//go:build !linux

package main

import "testing"

var platformTransports []string

func probedTransports() []string { return nil }

func transportArgs(*testing.T, string, []string) []string { return nil }
