package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinCPUs restricts every thread of the process to cpus and sets GOMAXPROCS
// to match. sched_setaffinity applies per thread, so each existing thread is
// set (threads created later inherit the mask). It returns the CPUs the
// kernel reports the process actually got.
func pinCPUs(cpus []int) ([]int, error) {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return nil, fmt.Errorf("pin to CPUs %v: %w", cpus, err)
		}
	}
	out, err := affinity()
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pin: no usable CPU in %v", cpus)
	}
	runtime.GOMAXPROCS(len(out))
	return out, nil
}

// affinity is the CPUs the process may run on (sched_getaffinity): what
// --cpus set, or what it inherited (taskset, cgroup cpusets).
func affinity() ([]int, error) {
	var got unix.CPUSet
	if err := unix.SchedGetaffinity(0, &got); err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	var out []int
	for c := 0; c < len(got)*64; c++ {
		if got.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}
