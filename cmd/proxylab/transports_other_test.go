//go:build !linux

package main

var platformTransports []string
