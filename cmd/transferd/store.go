package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// openStore opens PostgreSQL when TRANSFERD_DATABASE_URL is set, else the
// embedded SQLite store in TRANSFERD_DATA_DIR. Migrations run here. Only a
// benchmark build (-tags storefloor) has a store in memory instead.
func openStore(ctx context.Context, cfg *config, log zerolog.Logger) (orchestrator.Store, func(), error) {
	if s, closeStore := floorStore(ctx, log); s != nil {
		return s, closeStore, nil
	}
	if cfg.DatabaseURL != "" {
		s, err := openPostgres(ctx, string(cfg.DatabaseURL), log)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the PostgreSQL store: %w", err)
		}
		log.Info().Str("store", "postgres").Msg("store open")
		return s, s.Close, nil
	}
	s, err := sqlite.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the SQLite store in %s: %w", cfg.DataDir, err)
	}
	log.Info().Str("store", "sqlite").Str("data_dir", cfg.DataDir).Msg("store open")
	return s, func() { _ = s.Close() }, nil
}

// storeOpenPatience bounds how long a replica tries to reach PostgreSQL
// at start before it gives up (and its supervisor starts it again), and
// storeOpenWait is its first pause between tries, doubled up to 5 s.
var (
	storeOpenPatience = time.Minute
	storeOpenWait     = 250 * time.Millisecond
)

// openPostgres opens the PostgreSQL store, trying again while the server
// cannot be reached or will not take a connection yet
// (postgres.Unavailable): a server restarting or recovering from a crash,
// a failover, a database that starts after transferd. A process that
// exited then would only be restarted later, by its supervisor's back-off.
// Anything else (credentials, a database that does not exist) fails at
// once: waiting would not cure it.
func openPostgres(ctx context.Context, dbURL string, log zerolog.Logger) (*postgres.Store, error) {
	deadline := time.Now().Add(storeOpenPatience)
	wait := storeOpenWait
	for attempt := 1; ; attempt++ {
		s, err := postgres.Open(ctx, dbURL)
		if err == nil {
			return s, nil
		}
		if !postgres.Unavailable(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("PostgreSQL cannot be reached yet; trying again")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// crashPoint returns the engine's crash hook for TRANSFERD_TEST_CRASH_AT,
// which only the crash tests set: "hold:effect" kills the process with
// SIGKILL at that step boundary of the first transfer to reach it; an
// optional "#N" suffix ("transfer:intent#2") kills at the Nth time one
// transfer reaches it in this process (a step sent again: the second form
// of a join), and an optional "@provider" suffix limits it to one
// provider's transfers. It is read from the environment here, like all
// configuration, but is not part of the documented configuration.
func crashPoint(spec string, log zerolog.Logger) func(*orchestrator.Transfer, string) {
	if spec == "" {
		return nil
	}
	due := crashMatcher(spec)
	named, _, _ := strings.Cut(spec, "@") // as the crash tests name it
	return func(t *orchestrator.Transfer, p string) {
		if !due(t, p) {
			return
		}
		log.Warn().Str("transfer_id", t.ID).Str("point", named).Msg("TRANSFERD_TEST_CRASH_AT: killing the process")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// crashMatcher reports, for each crash point reached, whether it is the
// one spec names (see crashPoint). A count that is not a positive number
// is taken as 1.
func crashMatcher(spec string) func(*orchestrator.Transfer, string) bool {
	spec, provider, _ := strings.Cut(spec, "@")
	point, count, _ := strings.Cut(spec, "#")
	nth, err := strconv.Atoi(count)
	if err != nil || nth < 1 {
		nth = 1
	}
	var mu sync.Mutex
	reached := map[string]int{} // by transfer id
	return func(t *orchestrator.Transfer, p string) bool {
		if p != point || (provider != "" && t.Request.Provider != provider) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		reached[t.ID]++
		return reached[t.ID] == nth
	}
}
