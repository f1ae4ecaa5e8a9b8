package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/wake"
)

// openStore opens PostgreSQL when TRANSFERD_DATABASE_URL is set, else the
// embedded SQLite store in TRANSFERD_DATA_DIR. Migrations run here. Only a
// benchmark build (-tags storefloor) has a store in memory instead.
func openStore(ctx context.Context, cfg *config, clock func() time.Time, log zerolog.Logger) (orchestrator.Store, func(), error) {
	if s, closeStore := floorStore(ctx, log); s != nil {
		return s, closeStore, nil
	}
	if cfg.DatabaseURL != "" {
		s, err := openPostgres(ctx, string(cfg.DatabaseURL), clock, log)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the PostgreSQL store: %w", err)
		}
		off := s.ClockOffset()
		log.Info().Str("store", "postgres").Dur("server_clock_ahead_ms", off).Msg("store open")
		if off.Abs() > clockWarning {
			log.Warn().Dur("server_clock_ahead_ms", off).Msg("the database server's clock and this host's differ by more than a second: " +
				"heartbeats are judged on the server's clock, so replicas stay safe, but check this host's time synchronisation (NTP)")
		}
		return s, s.Close, nil
	}
	s, err := openSQLite(ctx, cfg.DataDir, cfg.ShutdownDelay+cfg.ShutdownTimeout+lockPatienceMargin, log)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the SQLite store in %s: %w", cfg.DataDir, err)
	}
	log.Info().Str("store", "sqlite").Str("data_dir", cfg.DataDir).Msg("store open")
	return s, func() { _ = s.Close() }, nil
}

// lockPatienceMargin is how much longer than TRANSFERD_SHUTDOWN_DELAY plus
// TRANSFERD_SHUTDOWN_TIMEOUT a start waits for another transferd to let go
// of the data directory: the time an exiting one takes to close its store
// after its shutdown. It is also the least by which a supervisor's grace
// period must exceed them (deploy_test.go; the manifests give 45 s for
// 5 s and 30 s),
// after which the supervisor has killed the old process anyway.
const lockPatienceMargin = 10 * time.Second

// lockRetry is the pause between tries of a start that finds the data
// directory locked, and lockSleep the pause itself (tests pause for
// nothing).
var (
	lockRetry = 250 * time.Millisecond
	lockSleep = func(ctx context.Context, d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
)

// openSQLite opens the SQLite store in dir. While another process holds
// the directory's lock (sqlite.Locked: one data directory serves one
// transferd) it tries again, for up to patience, logging at once that it
// waits and for whom. A restart that overlaps the process it replaces —
// a supervisor that starts the new process while the old one is still
// finishing or compensating its transfers, which takes up to its
// TRANSFERD_SHUTDOWN_TIMEOUT — then starts as soon as the old one has
// exited, rather than failing and being started again only after its
// supervisor's back-off, with callers on hold meanwhile. A process that
// holds the directory and is not exiting (a second copy started by
// mistake) is named in the log at once, and the start fails with the
// same words after patience. Any other error fails at once.
func openSQLite(ctx context.Context, dir string, patience time.Duration, log zerolog.Logger) (*sqlite.Store, error) {
	var waited time.Duration
	for {
		s, err := sqlite.Open(ctx, dir)
		var locked *sqlite.LockedError
		switch {
		case err == nil:
			if waited > 0 {
				log.Info().Str("data_dir", dir).Dur("waited_ms", waited).Msg("the other transferd let go of the data directory")
			}
			return s, nil
		case !errors.As(err, &locked):
			return nil, err
		case waited >= patience:
			return nil, fmt.Errorf("%w (waited %s for it to exit)", err, waited)
		case waited == 0:
			ev := log.Warn().Str("data_dir", dir).Str("lock", locked.Path).Dur("patience_ms", patience)
			if locked.PID > 0 {
				ev = ev.Int("holder_pid", locked.PID)
			}
			if locked.Host != "" {
				ev = ev.Str("holder_host", locked.Host)
			}
			if !locked.Since.IsZero() {
				ev = ev.Time("holder_since", locked.Since)
			}
			ev.Msg("another transferd is using the data directory: waiting for it to exit (a restart overlapping its shutdown); " +
				"if it is not exiting, stop it or give this one a data directory of its own")
		}
		if lockSleep(ctx, lockRetry) != nil {
			return nil, fmt.Errorf("%w (stopped after waiting %s for it to exit)", err, waited)
		}
		waited += lockRetry
	}
}

// soleWriterStreamPoll is how often an open event stream reads the
// outbox, when no save woke it, on a store no other process writes
// (SQLite; the benchmark build's memory).
const soleWriterStreamPoll = 1 * time.Second

// eventStreamPoll is how often an open event stream reads the outbox when
// no save woke it. PostgreSQL is shared by replicas: while this one hears
// the others' saves (hearOtherReplicas) a stream polls every second
// (api.DefaultEventStreamSafetyPoll), and while it does not, it reads
// their events at this poll, every 200 ms (api.DefaultEventStreamPoll; a
// transfer is driven by the replica its create reached, so behind a
// balancer most events are another's). Anything else is written by this
// process alone, every save that writes events wakes the streams, and the
// poll only catches what a wake missed: a save the store committed while
// answering an error, whose events no wake announced.
func eventStreamPoll(s orchestrator.Store) time.Duration {
	if _, shared := s.(*postgres.Store); shared {
		return api.DefaultEventStreamPoll
	}
	return soleWriterStreamPoll
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
func openPostgres(ctx context.Context, dbURL string, clock func() time.Time, log zerolog.Logger) (*postgres.Store, error) {
	deadline := time.Now().Add(storeOpenPatience)
	wait := storeOpenWait
	for attempt := 1; ; attempt++ {
		s, err := postgres.OpenWithClock(ctx, dbURL, clock)
		if err == nil {
			return s, nil
		}
		if !postgres.Unavailable(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in_ms", wait).
			Msg("PostgreSQL cannot be reached yet; trying again")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// serverClock is a store that tells its server's time (PostgreSQL's).
type serverClock interface{ Now() time.Time }

var _ serverClock = (*postgres.Store)(nil)

// clockWarning is the difference between the database server's clock
// and this host's that is logged as a warning at start.
const clockWarning = time.Second

// testClock returns the process's wall clock: time.Now, moved by spec
// (TRANSFERD_TEST_CLOCK_SKEW, a duration such as "20s" or "-20s"), which
// only the storm sets, to run a replica whose clock is off. Like
// TRANSFERD_TEST_CRASH_AT it is read from the environment here but is not
// part of the documented configuration.
func testClock(spec string, log zerolog.Logger) (func() time.Time, error) {
	if spec == "" {
		return time.Now, nil
	}
	skew, err := time.ParseDuration(spec)
	if err != nil {
		return nil, fmt.Errorf("TRANSFERD_TEST_CLOCK_SKEW: %w", err)
	}
	log.Warn().Dur("skew_ms", skew).Msg("TRANSFERD_TEST_CLOCK_SKEW: this process's wall clock is moved")
	// Add keeps time.Now's monotonic reading: durations are not skewed.
	return func() time.Time { return time.Now().Add(skew) }, nil
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

// eventsNotifier is a store that tells of the events other replicas save
// (the PostgreSQL store's notifications).
type eventsNotifier interface {
	ListenEvents(saved func(tenant string), failed func(error))
	Listening() bool
}

var _ eventsNotifier = (*postgres.Store)(nil)

var _ api.CallbackForwarder = (*postgres.Store)(nil)

// notesAnnouncer is a store that carries word of a transfer's saved notes
// between the replicas sharing it (the PostgreSQL store's notifications).
type notesAnnouncer interface {
	AnnounceNotesSaved(ctx context.Context, id string) error
	ListenNotesSaved(heard func(id string))
}

var _ notesAnnouncer = (*postgres.Store)(nil)

// announceNotesTimeout bounds a word of saved notes: a word not sent
// costs another replica's waiting callback its next poll, no more.
const announceNotesTimeout = 2 * time.Second

// notesSaved is the engine's Config.NotesSaved for store: word, to the
// other replicas, of each save that took in a callback's note, so that a
// callback answered there (which waits until the record holds its note)
// reads the record at once. nil for a store no other process writes, and
// without a public URL: the legs of a replica with none send no
// callbacks, and its Bandwidth transfers' notes (the legs they made),
// saved all the same, would cost the database a notification apiece for
// no one. The replica that hears callbacks listens whatever its own URL
// (hearNotesSaved). The word is sent off the engine's worker, which must
// not wait for it.
func notesSaved(store orchestrator.Store, publicURL string) func(id string) {
	n, ok := store.(notesAnnouncer)
	if !ok || publicURL == "" {
		return nil
	}
	return func(id string) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), announceNotesTimeout)
			defer cancel()
			_ = n.AnnounceNotesSaved(ctx, id) // a word lost costs a poll; the store is closing, or failing and said so
		}()
	}
}

// hearNotesSaved has other replicas' word of saved notes wake eng's waits
// on the transfer (a callback's answer waiting for its note), where the
// store carries it.
func hearNotesSaved(store orchestrator.Store, eng *orchestrator.Engine) {
	if n, ok := store.(notesAnnouncer); ok {
		n.ListenNotesSaved(eng.HeardNotesSaved)
	}
}

// callbackForwarder is the store's carrier of callback notes between the
// replicas sharing it (api.Config.Forwarder), or nil for a store no other
// process writes.
func callbackForwarder(store orchestrator.Store) api.CallbackForwarder {
	f, _ := store.(api.CallbackForwarder)
	return f
}

// hearOtherReplicas has the events other replicas save wake this
// replica's event streams of their tenant, and its webhook dispatcher
// (nudge, when not nil), where the store tells of them; it returns
// whether it hears them now, or nil for a store that never tells (no
// other process writes it). A lost connection, or notifications found
// not to be delivered (a pooler in transaction mode; said once), wakes
// every stream, so that each reads what it may have missed and polls at
// its faster rate from then on; the store wakes them all again once it
// listens again.
// The listener stops when the store is closed.
func hearOtherReplicas(store orchestrator.Store, streams *wake.Tenants, nudge func(), log zerolog.Logger) (heard func() bool) {
	n, ok := store.(eventsNotifier)
	if !ok {
		return nil
	}
	n.ListenEvents(func(tenant string) {
		if nudge != nil {
			nudge()
		}
		if tenant == "" {
			streams.NotifyAll()
		} else {
			streams.Notify(tenant)
		}
	}, func(err error) {
		streams.NotifyAll()
		log.Warn().Err(err).Msg("not hearing other replicas' saved events; event streams poll for them until the store listens again")
	})
	return n.Listening
}
