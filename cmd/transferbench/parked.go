package main

import (
	"context"
	"io"
)

func parkedScenario(ctx context.Context, o options, b binaries, dir string, out io.Writer) error { return nil }
