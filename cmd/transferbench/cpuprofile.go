package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// profileEnv is the environment that makes a profiling build of transferd
// (-tags cpuprofile) write its CPU profile for the store's daemon, or nil
// when the run takes no profile.
func profileEnv(o options, dir, store string) ([]string, string) {
	if o.cpuprofile == "" || store == "memory" {
		return nil, ""
	}
	path := filepath.Join(dir, "cpu-"+store+".pprof")
	return []string{"TRANSFERD_CPUPROFILE=" + path}, path
}

// mergeProfiles writes the CPU profiles in (one per daemon of the
// throughput scenario) to out as one, with go tool pprof, which adds up
// their samples: one profile of the whole run, to read, or to build
// transferd with (-pgo), so that the compiler favours what every store
// and provider of the run spent its time on.
func mergeProfiles(ctx context.Context, out string, in []string) error {
	for _, p := range in {
		st, err := os.Stat(p)
		if err == nil && st.Size() == 0 {
			err = errors.New("the file is empty")
		}
		if err != nil {
			return fmt.Errorf("transferd wrote no CPU profile to %s (did it exit cleanly?): %w", p, err)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof", "-proto"}, in...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go tool pprof -proto: %w: %s", err, stderr.Bytes())
	}
	return os.WriteFile(out, stdout.Bytes(), 0o644)
}
