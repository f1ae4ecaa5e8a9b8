package main

import (
	"context"
	"io"
)

func storeScenario(ctx context.Context, o options, dir string, out io.Writer) error { return nil }
