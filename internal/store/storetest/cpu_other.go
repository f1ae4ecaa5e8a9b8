//go:build !unix

package storetest

import (
	"testing"
	"time"
)

// processCPU has no portable source outside unix: cpu-ns/op is not
// reported there.
func processCPU() (time.Duration, bool) { return 0, false }

func reportCPU(*testing.B, time.Duration, bool) {}
