// Package sqlite is the embedded orchestrator.Store: one SQLite database in
// a data directory, needing nothing else to run (DESIGN.md §4). It uses the
// pure-Go driver modernc.org/sqlite so that the binary stays static
// (CGO_ENABLED=0).
//
// A transfer is stored whole as JSON, so every field round-trips exactly,
// times to the nanosecond; the columns beside it copy what queries select
// on. Writes go through a single connection: SQLite has one writer at a
// time anyway, and serializing in Go rather than in the file lock means no
// SQLITE_BUSY under load and read-modify-write transactions (Claim,
// Heartbeat, Reserve, Settle) that are atomic without retries. Readers use a pool of
// their own; WAL lets them run beside the writer. One store at a time has
// the data directory: Open locks it (LockFileName).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/groupcommit"
	"github.com/transferd/transferd/internal/store/schema"
	"github.com/transferd/transferd/internal/webhooks"
)

// FileName is the database file inside the data directory.
const FileName = "transferd.db"

// readers is the size of the read pool: List, Get and the API's polling
// of transfers run there, beside the writer.
const readers = 4

// Store is an orchestrator.Store in a SQLite database. It is safe for
// concurrent use.
type Store struct {
	w *sql.DB // exactly one connection: every write, in order
	r *sql.DB // query_only connections for reads
	// ckpt is one connection of its own for the WAL checkpoints between
	// Purge's slices (store.go), which run beside the writer, not on it.
	ckpt *sql.DB
	// file is the database file, open from Open to Close, which the
	// purge's checkpoints flush to disk (Store.checkpoint). It is closed
	// only after every connection: closing any descriptor of a file drops
	// every POSIX lock the process holds on it, SQLite's included.
	file *os.File
	// lock is the data directory's lock file, holding its lock
	// (LockFileName) from Open to Close; nil where there is no flock.
	// Released once, after everything else is closed.
	lock       *os.File
	unlockOnce sync.Once
	// update is prepared once: a transfer is saved at every step, and
	// parsing the statement each time cost a fifth of a save's CPU.
	update *sql.Stmt
	// insertEvent writes one event of the outbox; prepared once for the
	// same reason.
	insertEvent *sql.Stmt
	// insert and linkIdem are Create's, prepared once for the same reason.
	insert, linkIdem *sql.Stmt
	// look reads a transfer's pending signal in a save's transaction
	// (Transfer.LookForSignal).
	look *sql.Stmt
	// holding reads the transfers that hold a call in a create's
	// transaction.
	holding *sql.Stmt
	// tokenOf reads the token of a replica's heartbeat in a save's
	// transaction (tokenFreeIn).
	tokenOf *sql.Stmt
	// eventFault, set only by tests, fails the writing of an event.
	eventFault func(eventID string) error
	// signalTaken, set only by tests, is called once PutSignal has the
	// writer, from which its caller's context no longer counts.
	signalTaken func()
	// The group commit (commit.go).
	commits *groupcommit.Queue[*updateReq]
	// finishes batches webhook deliveries' results (FinishDelivery).
	finishes *webhooks.Finishes
	batches  atomic.Int64 // transactions of saves written
	// finishBatches counts the transactions of results written.
	finishBatches atomic.Int64
	// prepared are the writer's statements of webhook delivery
	// (prepared.go); unprepared counts the statements a wtx ran by their
	// text instead.
	prepared   map[string]*sql.Stmt
	unprepared atomic.Int64
	// reads runs the reader pool's statements prepared (prepared.go).
	reads     *readStmts
	closeOnce sync.Once
	// Purge's slices (store.go): the constants sliceBudget, purgeChunk
	// and vacuumChunk, and time.Now; tests set them to count slices
	// without depending on speed. slices counts the slices committed.
	budget                  time.Duration
	purgeChunk, vacuumChunk int
	clock                   func() time.Time
	slices                  atomic.Int64
	checkpoints             atomic.Int64 // between slices, on ckpt
	syncs                   atomic.Int64 // of file, after those checkpoints
	rewrites                atomic.Int64 // batches written again with savepoints (commit.go)
}

var _ orchestrator.Store = (*Store)(nil)

// Open opens (creating if needed) dir/transferd.db, creating dir with mode
// 0700 and the database with 0600 (transfers name callers and agents), and
// applies the embedded migrations.
//
// It first takes the directory's lock (LockFileName), held until Close,
// and fails at once, with a *LockedError (Locked) naming the holder,
// when another store holds it: another process's, or this process's own
// (a store not closed). It does not wait: whether to is the caller's to
// decide (cmd/transferd waits a while for a process that is exiting).
func Open(ctx context.Context, dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", dir, err)
	}
	// The lock comes before any file of the database is opened: a
	// second Open in this process that opened and closed transferd.db
	// would drop the first store's POSIX locks on it (Store.file).
	lock, err := lockDir(abs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	path := filepath.Join(abs, FileName)
	// Create the file before SQLite does: SQLite would use the umask
	// (usually world-readable), and its -wal and -shm files copy the
	// database's mode. The store keeps it open, to flush the file between
	// a purge's slices (Store.file).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = unlockDir(lock)
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	s := &Store{file: f, lock: lock, budget: sliceBudget, purgeChunk: purgeChunk, vacuumChunk: vacuumChunk, clock: time.Now}
	if s.w, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if s.r, err = sql.Open("sqlite", dsn(path, true)); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	s.reads = &readStmts{db: s.r, max: maxReadStmts}
	if s.ckpt, err = sql.Open("sqlite", dsn(path, false)); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.ckpt.SetMaxOpenConns(1)
	s.ckpt.SetMaxIdleConns(1)
	if err := s.init(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if s.update, err = s.w.PrepareContext(ctx, updateSQL); err != nil {
		_ = s.Close()
		return nil, fail("prepare", err)
	}
	if s.insertEvent, err = s.w.PrepareContext(ctx, insertEventSQL); err != nil {
		_ = s.Close()
		return nil, fail("prepare", err)
	}
	if s.insert, err = s.w.PrepareContext(ctx, insertSQL); err != nil {
		_ = s.Close()
		return nil, fail("prepare", err)
	}
	if s.linkIdem, err = s.w.PrepareContext(ctx, linkIdemSQL); err != nil {
		_ = s.Close()
		return nil, fail("prepare", err)
	}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{{&s.look, lookSignalSQL}, {&s.holding, holdingSQL}, {&s.tokenOf, tokenOfSQL}} {
		if *p.st, err = s.w.PrepareContext(ctx, p.q); err != nil {
			_ = s.Close()
			return nil, fail("prepare", err)
		}
	}
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, fail("prepare", err)
	}
	if s.lock != nil {
		// This process holds the directory's lock: every process that
		// wrote a heartbeat here has ended. Its heartbeat, live by the
		// host's clock until it ran out, kept its open transfers (callers
		// perhaps on hold) from a process under another name (the default
		// name is the host's, which a container's restart changes) for
		// the rest of the lease, and for as long again as the clock was
		// stepped back in between. They end now: what the earlier
		// processes left is claimable at once, and an earlier name that
		// comes back starts a heartbeat anew. Where there is no flock
		// (lockDir), a live heartbeat may be another process's.
		if _, err := s.w.ExecContext(ctx, `UPDATE replicas SET expires = ?`, ts(time.Time{})); err != nil {
			_ = s.Close()
			return nil, fail("end the heartbeats of earlier processes", err)
		}
	}
	s.commits = groupcommit.New("sqlite", maxBatch, s.commitBatch)
	s.finishes = webhooks.NewFinishes("sqlite", maxFinishes, s.finishBatch)
	return s, nil
}

// dsn is the driver's data source name for path. Every connection gets:
//   - busy_timeout: another process (a backup, the sqlite3 shell) may hold
//     the lock for a moment; wait rather than fail a transition.
//   - foreign_keys: signals go with their transfer (ON DELETE CASCADE).
//   - journal_mode=WAL: readers do not block the writer nor it them, and a
//     commit appends to one file instead of rewriting pages twice.
//   - synchronous=FULL: every commit is fsynced before it returns. The
//     engine saves a step's intent and only then makes the provider call
//     (hold, dial, transfer); with NORMAL a power loss or kernel crash
//     could drop the last saved intents although the calls were made, and
//     a restarted transferd would not know it has a caller on hold — the
//     stranded caller transferd exists to prevent. (NORMAL would survive a
//     killed process, not a lost machine.) The cost is one fsync per
//     transition, measured by BenchmarkUpdate.
//
// The writer's transactions BEGIN IMMEDIATE, so that a read-modify-write
// transaction holds the write lock from its first read.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", autocheckpoint))
	}
	// An escaped path, so that a directory named with '?', '#' or '%'
	// cannot be read as URI parameters.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// init applies the migrations and checks that the pragmas took.
func (s *Store) init(ctx context.Context) error {
	if err := migrate(ctx, s.w); err != nil {
		return err
	}
	if err := incrementalVacuum(ctx, s.w); err != nil {
		return err
	}
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		// WAL needs shared memory, which some network file systems lack.
		return fmt.Errorf("journal mode is %q, not wal: put the data directory on a local file system", mode)
	}
	var pages int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		return err
	}
	if pages != autocheckpoint {
		return fmt.Errorf("wal_autocheckpoint is %d, not %d", pages, autocheckpoint)
	}
	return s.r.PingContext(ctx)
}

// incrementalVacuum makes the file one that can give pages back to the
// file system (auto_vacuum=INCREMENTAL), so that Purge can shrink it: a
// database purged of a million transfers otherwise keeps its size for
// ever, its free pages only reused by later rows. SQLite records the
// mode in the file, and changing it on a file that has tables takes a
// VACUUM: a new database does this once, right after its migrations, at
// no cost; an existing one is rewritten once, at the first Open by a
// transferd that has this (it holds the write lock, and takes about as
// long and as much free disk as copying the file). Should the VACUUM
// fail (a full disk), Open fails and says so, and nothing has changed.
func incrementalVacuum(ctx context.Context, db *sql.DB) error {
	var mode int
	if err := db.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return fmt.Errorf("auto_vacuum: %w", err)
	}
	const incremental = 2
	if mode == incremental {
		return nil
	}
	if _, err := db.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return fmt.Errorf("auto_vacuum: %w", err)
	}
	if _, err := db.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("auto_vacuum: vacuum: %w", err)
	}
	return nil
}

// Close closes the database. The last connection to close checkpoints the
// WAL into the database file; then the directory's lock is released.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.commits != nil {
			s.commits.Close()
		}
		if s.finishes != nil {
			s.finishes.Close()
		}
	})
	var errs []error
	if s.update != nil {
		errs = append(errs, s.update.Close())
	}
	for _, st := range []*sql.Stmt{s.insertEvent, s.insert, s.linkIdem, s.look, s.holding, s.tokenOf} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range s.prepared {
		errs = append(errs, st.Close())
	}
	if s.reads != nil {
		errs = append(errs, s.reads.close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.file != nil {
		// Close may be called again, as the pools allow.
		if err := s.file.Close(); !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	// Last: the next transferd may open the directory once every
	// connection of this one is closed and the WAL checkpointed.
	if s.lock != nil {
		s.unlockOnce.Do(func() { errs = append(errs, unlockDir(s.lock)) })
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Ping implements orchestrator.Store: both pools must answer.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.reads.queryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fail("ping", err)
	}
	if err := s.w.PingContext(ctx); err != nil {
		return fail("ping", err)
	}
	return nil
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies the migrations not yet recorded in schema_migrations,
// all in one transaction: a failure leaves the schema as it was. BEGIN
// IMMEDIATE takes the write lock first, so two processes opening the same
// file migrate one after the other.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := schema.Load(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at TEXT    NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		// A newer transferd migrated this database; this one does not
		// know the schema and must not write to it.
		return fmt.Errorf("migrate: the database has schema version %d, newer than this transferd's %d", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, ts(time.Now())); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if m.Name == "0012_event_id_key" {
			if err := makeEventIDKey(ctx, tx); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.Name, err)
			}
		}
		if m.Name == "0013_webhook_payloads" {
			if err := movePayloads(ctx, tx); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.Name, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// makeEventIDKey makes the store's orchestrator.EventIDKey, in the
// migration that made its table: the outbox's last position then is where
// the ids of older versions end.
func makeEventIDKey(ctx context.Context, tx *sql.Tx) error {
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(pos), 0) FROM events`).Scan(&last); err != nil {
		return err
	}
	k, err := orchestrator.NewEventIDKey(last)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO event_id_key (id, secret, legacy_below) VALUES (1, ?, ?)`, k.Secret[:], k.LegacyBelow)
	return err
}

// EventIDKey implements orchestrator.EventStore.
func (s *Store) EventIDKey(ctx context.Context) (orchestrator.EventIDKey, error) {
	var k orchestrator.EventIDKey
	var secret []byte
	err := s.reads.queryRow(ctx, `SELECT secret, legacy_below FROM event_id_key WHERE id = 1`).Scan(&secret, &k.LegacyBelow)
	if err != nil {
		return k, fail("event id key", err)
	}
	copy(k.Secret[:], secret)
	return k, nil
}

// timeLayout is how columns hold times: UTC, fixed width, so that text
// order is time order, to the nanosecond.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func ts(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTS(s string) (time.Time, error) { return time.Parse(timeLayout, s) }

// errNotFound is the cause of KindNotFound errors.
var errNotFound = errors.New("transfer not found")

// fail wraps an unexpected error with the store and the operation, e.g.
// "sqlite: update tr_…: disk I/O error".
func fail(op string, err error) error { return fmt.Errorf("sqlite: %s: %w", op, err) }

// limitArg is the LIMIT of every statement whose bound is an argument. A
// bare "LIMIT ?" makes SQLite read the bound value when it plans the
// statement, and mark the statement to be planned again whenever that
// parameter is bound anew, which every run of a prepared statement does:
// each run compiled it again (12–25 µs for a small query here, up to a
// tenth of a millisecond for a claim of webhook deliveries under load;
// TestStatementsCompileOnce). "? + 0" is an expression whose value
// SQLite reads only when it runs. The plans do not depend on the bound
// (TestListPlansUseIndexes, TestDeliveryClaimPlansUseIndexes).
const limitArg = `LIMIT ? + 0`

// kindErr is fail for errors the orchestrator maps by kind.
func kindErr(op string, k orchestrator.Kind, err error) error {
	return orchestrator.E("sqlite: "+op, k, err)
}

// code returns SQLite's extended result code of err, or 0.
func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func isUnique(err error) bool     { return code(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE }
func isForeignKey(err error) bool { return code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }
