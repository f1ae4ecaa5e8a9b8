package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// stopSignals returns the context run runs under: the first SIGINT or
// SIGTERM ends it (a graceful shutdown), and a second one ends its
// force context too (see forced), which cuts that shutdown short. An
// operator pressing Ctrl-C twice, or a supervisor signalling again, means
// "now": with signal.NotifyContext the second signal was caught and
// dropped, and the process went on waiting for up to
// TRANSFERD_SHUTDOWN_TIMEOUT. stop stops listening: a signal after it
// ends the process the default way.
func stopSignals() (ctx context.Context, stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	force, cancelForce := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-sigs:
			case <-done:
				return
			}
			if i == 0 {
				cancel()
				continue
			}
			cancelForce()
			return
		}
	}()
	return withForce(ctx, force), func() {
		signal.Stop(sigs)
		close(done)
		cancel()
		cancelForce()
	}
}

// forceKey is the key of the force context in run's context.
type forceKey struct{}

// withForce gives ctx a force context: once it ends, run's graceful
// shutdown is cut short.
func withForce(ctx, force context.Context) context.Context {
	return context.WithValue(ctx, forceKey{}, force)
}

// forced returns the force context of ctx (withForce), or one that never
// ends.
func forced(ctx context.Context) context.Context {
	if f, ok := ctx.Value(forceKey{}).(context.Context); ok {
		return f
	}
	return context.Background()
}
