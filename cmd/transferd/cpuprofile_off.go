//go:build !cpuprofile

package main

// startProfile does nothing in the shipped build: only a profiling build
// writes a CPU profile (cpuprofile.go).
func startProfile() (stop func(), err error) { return func() {}, nil }
