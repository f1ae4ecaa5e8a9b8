package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memCgroup is a memory cgroup of the benchmark's own, with a hard limit,
// for running transferd as a container with a memory limit runs it: the
// kernel kills it beyond the limit, and transferd reads the limit from
// its cgroup (a soft Go memory limit at 90% of it). Linux only, as root.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup makes a child of this process's memory cgroup (cgroup v2,
// or the v1 memory controller) limited to limit bytes.
func newMemCgroup(name string, limit int64) (*memCgroup, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var cg *memCgroup
		switch {
		case parts[0] == "0" && parts[1] == "":
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				continue // a v2 hierarchy beside v1 controllers: not where memory is
			}
			cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup", parts[2], name), v2: true}
		case strings.Contains(","+parts[1]+",", ",memory,"):
			cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", parts[2], name)}
		default:
			continue
		}
		if err := os.MkdirAll(cg.dir, 0o755); err != nil {
			return nil, fmt.Errorf("memory cgroup (run as root?): %w", err)
		}
		file, value := "memory.limit_in_bytes", strconv.FormatInt(limit, 10)
		if cg.v2 {
			file = "memory.max"
		}
		if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(value), 0o644); err != nil {
			_ = cg.remove()
			return nil, fmt.Errorf("memory cgroup limit: %w", err)
		}
		return cg, nil
	}
	return nil, errors.New("no memory cgroup controller for this process")
}

// wrap returns the command that runs bin with args inside the cgroup: a
// shell that moves itself in and then becomes bin (the same pid), so that
// everything transferd allocates, from its first byte, is charged to it.
func (c *memCgroup) wrap(bin string) (string, []string) {
	procs := filepath.Join(c.dir, "cgroup.procs")
	return "/bin/sh", []string{"-c", `echo $$ > "$1" && shift && exec "$@"`, "sh", procs, bin}
}

// peak is the cgroup's highest charge in bytes; ooms counts the kernel's
// out-of-memory kills in it.
func (c *memCgroup) peak() int64 {
	name := "memory.max_usage_in_bytes"
	if c.v2 {
		name = "memory.peak"
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, name))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (c *memCgroup) ooms() int64 {
	name := "memory.oom_control"
	if c.v2 {
		name = "memory.events"
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, name))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the cgroup once the processes in it have exited.
func (c *memCgroup) remove() error { return os.Remove(c.dir) }
