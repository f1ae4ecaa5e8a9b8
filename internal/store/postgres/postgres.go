// Package postgres is the orchestrator.Store for running several replicas
// (DESIGN.md §4): they share one PostgreSQL database, each transfer is
// owned by one replica while that replica's heartbeat (one row per
// replica) is live, and a replica that dies has its transfers claimed by
// another (Claim with FOR UPDATE SKIP LOCKED).
//
// A transfer is stored whole as JSON, so every field round-trips exactly,
// times to the nanosecond; the columns beside it, and its row of
// transfer_keys, copy what queries select on, and their timestamptz values
// hold microseconds.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/groupcommit"
	"github.com/transferd/transferd/internal/store/schema"
	"github.com/transferd/transferd/internal/webhooks"
)

// Store is an orchestrator.Store in a PostgreSQL database. It is safe for
// concurrent use, also by several processes sharing the database.
type Store struct {
	pool *pgxpool.Pool
	// secrets are the password(s) of the database URL, removed from any
	// error text before it leaves the package.
	secrets []string
	// purgeBatch is the purgeBatch constant, set lower by tests to
	// exercise the batching.
	purgeBatch int
	// clock times a purge's batches and rest waits after each full one
	// (Store.pace); tests replace both.
	clock func() time.Time
	rest  func(ctx context.Context, d time.Duration) error
	// The group commit (commit.go).
	commits *groupcommit.Queue[*saveReq]
	// finishes is the group commit of webhook results (FinishDelivery);
	// finishBatches counts the transactions of results written.
	finishes      *webhooks.Finishes
	finishBatches atomic.Int64
	// finishTimeout bounds a batch of results on the server (the client
	// waits finishGrace more): commitTimeout, less in tests.
	finishTimeout time.Duration
	// planMode: the server has plan_cache_mode (PostgreSQL 12 and later),
	// which a batch sets (planSQL); jitMode: it has jit (PostgreSQL 11
	// and later), which a batch turns off.
	planMode, jitMode bool
	closeOnce         sync.Once
	// wall is this replica's host clock (time.Now; a skewed or stepped
	// one in tests); reading the last reading of the server's clock
	// taken, which Now counts from (clock.go).
	wall    func() time.Time
	reading atomic.Pointer[reading]
	// The notifications of saved events (notify.go): channel is the
	// outbox's channel, token names this Store in what it sends, and
	// notifyOff (set by a benchmark) sends nothing. The listener, once
	// ListenEvents starts it, hands what it hears to handlers until
	// listenStop; listenPID is its connection's server process (for the
	// tests that end it); listenClosed: Close stopped it for good.
	channel, token string
	listenClosed   bool
	notifyOff      bool
	listenMu       sync.Mutex
	handlers       []eventsHandler
	listenStop     context.CancelFunc
	listenDone     chan struct{}
	listening      atomic.Bool
	listenPID      atomic.Uint32
	// The listener's probes (notify.go): it checks its connection and
	// probes after each quiet spell of quietCheck (listenCheck, less in
	// tests), and hears a probe within probeWithin (probeWait, in
	// nanoseconds: tests change it while the listener runs) or is not
	// listening. probes numbers the probes sent, and deaf, set only by
	// tests, has the listener drop whatever it receives, as one behind a
	// pooler in transaction mode receives nothing.
	quietCheck  time.Duration
	probeWithin atomic.Int64
	probes      atomic.Uint64
	deaf        atomic.Bool
	// signalTaken, set only by tests, is called once PutSignal has its
	// connection, from which its caller's context no longer counts.
	signalTaken func()
}

var _ orchestrator.Store = (*Store)(nil)

// Open connects to the database at dbURL (postgres://user:pass@host/db?…,
// or key=value pairs; pgxpool's pool_* parameters apply) and applies the
// embedded migrations. The password never appears in an error.
func Open(ctx context.Context, dbURL string) (*Store, error) {
	return open(ctx, dbURL, nil, time.Now)
}

// OpenWithClock is Open for a replica whose wall clock is wall (the
// storm's skewed replicas): Now tells the server's time from it.
func OpenWithClock(ctx context.Context, dbURL string, wall func() time.Time) (*Store, error) {
	return open(ctx, dbURL, nil, wall)
}

// open is Open, with tune, if not nil, applied to the pool's
// configuration last (the tests' tracer), and wall as this replica's
// clock.
func open(ctx context.Context, dbURL string, tune func(*pgxpool.Config), wall func() time.Time) (*Store, error) {
	s := &Store{secrets: passwords(dbURL), purgeBatch: purgeBatch, clock: time.Now, rest: sleep, finishTimeout: commitTimeout, wall: wall,
		token: newToken(), quietCheck: listenCheck}
	s.probeWithin.Store(int64(probeWait))
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, s.fail("open: parse the database URL", err)
	}
	// The password may also come from PGPASSWORD, a passfile or a service
	// file; fallbacks (several hosts) share it.
	s.secrets = addSecret(s.secrets, cfg.ConnConfig.Password)
	if !poolMaxConnsSet.MatchString(dbURL) {
		cfg.MaxConns = defaultMaxConns(runtime.GOMAXPROCS(0))
	}
	// Every transaction of the store is written for READ COMMITTED, where
	// each statement sees what committed before it began: a save's look
	// for a signal after its write (Transfer.LookForSignal), and the
	// deliveries' pair locks, see what the transactions they waited for
	// wrote. Under a stricter default of the role or the database the
	// look read the batch's first snapshot and missed a cancel the client
	// was told was accepted. The session's setting overrides theirs (and
	// the URL's).
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	// Every step's intent is saved before its request goes out, and a
	// replica resumes from what it saved: a commit the server answered
	// must survive the server's crash. With synchronous_commit off (a
	// common tuning of a whole server) it may not: the storm that crashes
	// the server lost acknowledged steps, and left callers held. So a
	// session that would commit that way is set to on; every other value
	// (local, remote_write, on, remote_apply) waits for the WAL's flush
	// and is the operator's to choose. The writes of webhook delivery
	// still commit without waiting, by their own choice (unsyncedSQL).
	// A session also ends a transaction left idle (idleInTransaction).
	cfg.AfterConnect = sessionSettings
	// Every session must be able to write: a server in recovery (a hot
	// standby) answers every save with "read-only transaction". A host
	// name that still points at the demoted primary during a failover, or
	// the first of several hosts in the URL, would give the pool such a
	// session, which it kept like any other: every save on it failed until
	// the pool retired it (pool_max_conn_lifetime, an hour), long after the
	// name pointed at the new primary. So a session is refused unless it
	// can write, as target_session_attrs=read-write does (the next host is
	// tried; Unavailable tells the start to wait); a URL that names its own
	// target_session_attrs keeps it.
	if cfg.ConnConfig.ValidateConnect == nil {
		cfg.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	}
	// Without a statement description pgx sends the JSON parameters as
	// bytes, which the server refuses for jsonb: fail at start, not on
	// each save.
	if m, bad := map[pgx.QueryExecMode]string{pgx.QueryExecModeExec: "exec",
		pgx.QueryExecModeSimpleProtocol: "simple_protocol"}[cfg.ConnConfig.DefaultQueryExecMode]; bad {
		return nil, s.fail("open", fmt.Errorf("default_query_exec_mode=%s is not supported: use cache_statement (the default) or cache_describe", m))
	}
	if tune != nil {
		tune(cfg)
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.fail("open", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.fail("open", err)
	}
	if err := migrate(ctx, s.pool); err != nil {
		s.pool.Close()
		return nil, s.fail("open", err)
	}
	// An older server plans as it always did, and knows no such setting.
	// The notifications' channel is the outbox's (notify.go).
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('plan_cache_mode', true) IS NOT NULL,
		current_setting('jit', true) IS NOT NULL, 'transferd_events_' || 'events'::regclass::oid`).Scan(&s.planMode, &s.jitMode, &s.channel); err != nil {
		s.pool.Close()
		return nil, s.fail("open", err)
	}
	if err := s.measureClock(ctx); err != nil {
		s.pool.Close()
		return nil, s.fail("open: read the server's clock", err)
	}
	s.commits = groupcommit.New("postgres", maxBatch, s.commitBatch)
	s.finishes = webhooks.NewFinishes("postgres", maxFinishes, s.finishBatch)
	return s, nil
}

// idleInTransaction is the idle_in_transaction_session_timeout of a
// session whose server, database, role or URL sets none. A replica
// stopped in the middle of a transaction (a VM paused, a process frozen:
// the storm's TRANSFERD_STORM_PAUSES) holds its row locks until it wakes
// or its connection ends, which TCP may take hours to tell; a transfer
// whose row it locked cannot be claimed by another replica meanwhile
// (Claim skips locked rows), and its caller may be on hold. No
// transaction of the store waits between its statements for anything but
// the server's answers.
const idleInTransaction = 30 * time.Second

// sessionSettings sets a new session's synchronous_commit to on if it is
// off (see open), whether the server, the database, the role or the URL
// set it so, and its idle_in_transaction_session_timeout to
// idleInTransaction if none is set. One exchange of the simple protocol:
// nothing is prepared or kept in the connection's statement cache for it.
func sessionSettings(ctx context.Context, c *pgx.Conn) error {
	_, err := c.PgConn().Exec(ctx, `SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off';
		SELECT set_config('idle_in_transaction_session_timeout', '`+strconv.FormatInt(idleInTransaction.Milliseconds(), 10)+`', false)
			WHERE current_setting('idle_in_transaction_session_timeout') = '0'`).ReadAll()
	return err
}

// poolMaxConnsSet finds pool_max_conns in a URL's query or in key=value
// pairs: the operator's own pool size wins.
var poolMaxConnsSet = regexp.MustCompile(`(?:^|[?&\s])pool_max_conns\s*=`)

// defaultMaxConns sizes the pool when the database URL does not
// (pool_max_conns). pgxpool's own default, max(4, CPUs), kept a 2-CPU
// replica at 4 connections: a save holds its connection for a round trip
// and the database's commit, during which this process has nothing to do
// with the CPU, so with 8 or more transfers at a time saves queued for a
// connection while both the database and transferd idled. Four per CPU
// keeps the CPUs busy across those waits; it stays small next to
// PostgreSQL's max_connections (100) for a few replicas.
//
// Statements are prepared once per connection and reused: pgx's default
// exec mode (cache_statement) keeps a cache of prepared statements per
// connection keyed by the SQL text, and every statement here has a fixed
// text (List has one per combination of filters). A URL may choose
// cache_describe instead (default_query_exec_mode, e.g. for PgBouncer in
// transaction mode); exec and simple_protocol are refused (see Open).
func defaultMaxConns(procs int) int32 { return int32(max(8, 4*procs)) }

// Close stops the listener of saved events, writes the saves already
// queued, then closes every connection of the pool. Saves after Close
// fail.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.stopListening()
		s.commits.Close()
		s.finishes.Close()
		s.pool.Close()
	})
}

// Ping implements orchestrator.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail("ping", err)
	}
	return nil
}

// ---- errors ----

// errNotFound is the cause of KindNotFound errors.
var errNotFound = errors.New("transfer not found")

// fail wraps an unexpected error with the store and the operation, e.g.
// "postgres: update tr_…: …". Should the text contain the password (a
// driver quoting its configuration), the cause is replaced by a redacted
// copy of its text: the chain is lost, the secret does not leak.
func (s *Store) fail(op string, err error) error {
	if msg := err.Error(); s.leaks(msg) {
		return fmt.Errorf("postgres: %s: %s", op, s.redact(msg))
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// kindErr is for errors the orchestrator maps by kind; their causes are
// this package's own.
func kindErr(op string, k orchestrator.Kind, err error) error {
	return orchestrator.E("postgres: "+op, k, err)
}

func addSecret(list []string, pw string) []string {
	if pw == "" || slices.Contains(list, pw) {
		return list
	}
	list = append(list, pw)
	// Longest first, so that a password containing another is removed
	// whole.
	slices.SortFunc(list, func(a, b string) int { return len(b) - len(a) })
	return list
}

func (s *Store) leaks(msg string) bool {
	for _, pw := range s.secrets {
		if strings.Contains(msg, pw) {
			return true
		}
	}
	return false
}

func (s *Store) redact(msg string) string {
	for _, pw := range s.secrets {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

var (
	// dsnPassword finds password=… in a key=value connection string.
	dsnPassword = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
	// urlPassword finds a password parameter in a URL that does not parse.
	urlPassword = regexp.MustCompile(`[?&]password=([^&#]*)`)
)

// passwords returns the passwords written in a connection string, found
// without pgx (whose parse errors are what may quote them): the URL's
// user info and password parameter, or a key=value password. Both the raw
// and the decoded spellings are returned.
func passwords(conn string) []string {
	var list []string
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if pw, ok := u.User.Password(); ok {
			list = addSecret(list, pw)
		}
		for _, pw := range u.Query()["password"] {
			list = addSecret(list, pw)
		}
	}
	// The raw text between ':' and '@', also for a URL that does not parse.
	if i, j := strings.Index(conn, "://"), strings.LastIndex(conn, "@"); i >= 0 && j > i {
		if _, pw, ok := strings.Cut(conn[i+3:j], ":"); ok {
			list = addSecret(list, pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				list = addSecret(list, dec)
			}
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(conn, -1) {
		list = addSecret(list, m[1])
		if dec, err := url.QueryUnescape(m[1]); err == nil {
			list = addSecret(list, dec)
		}
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(conn, -1) {
		pw := m[1]
		list = addSecret(list, pw)
		if len(pw) >= 2 && strings.HasPrefix(pw, "'") && strings.HasSuffix(pw, "'") {
			list = addSecret(list, strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(pw[1:len(pw)-1]))
		}
	}
	return list
}

// pgCode returns the SQLSTATE and constraint of a server error.
func pgCode(err error) (code, constraint string) {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code, e.ConstraintName
	}
	return "", ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// Unavailable reports whether err, from Open, says that the server could
// not be reached or would not take a connection yet, which waiting may
// cure: no answer (refused, reset, timed out, a name not resolved yet),
// a connection ended (one pgx already knew had ended included), or a
// server starting, shutting down, recovering from a crash or out of
// connections (SQLSTATE classes 08 and 57P, 53300), or a server that
// cannot write yet (a standby a failover is promoting, or a
// host name that still points at the demoted primary). A
// refusal of what transferd asked for (credentials, a database that does
// not exist, privileges, a URL that does not parse, TLS) is not: waiting
// never cures it.
func Unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	// pgconn.ErrConnClosed is pgx's word for a connection it already
	// knows has ended, used again: ended like any other.
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, pgconn.ErrReadOnlyConnection) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, pgconn.ErrConnClosed)
}

// ---- migrations ----

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the pg_advisory_xact_lock key that serializes
// migrations ("transfer" in ASCII).
const migrationLock int64 = 0x7472616e73666572

// migrate applies the migrations not yet recorded in schema_migrations in
// one transaction, so that a failure leaves the schema as it was. Several
// replicas starting at once would race on CREATE TABLE (even IF NOT
// EXISTS fails on a concurrent creation); the transaction-scoped advisory
// lock makes them take turns, and the later ones find nothing to do.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := schema.Load(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		// A newer transferd migrated this database; this one does not
		// know the schema and must not write to it.
		return fmt.Errorf("migrate: the database has schema version %d, newer than this transferd's %d", current, len(ms))
	}
	for _, m := range ms[current:] {
		// No arguments: pgx sends it with the simple protocol, which
		// runs a multi-statement script.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if m.Name == "0013_event_id_key" {
			if err := makeEventIDKey(ctx, tx); err != nil {
				return fmt.Errorf("migrate: %s: %w", m.Name, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// makeEventIDKey makes the store's orchestrator.EventIDKey, in the
// migration that made its table (under the migrations' lock: one replica
// makes it, the others find it): the outbox's last position then is where
// the ids of older versions end.
func makeEventIDKey(ctx context.Context, tx pgx.Tx) error {
	// After the saves writing events now have committed (eventsLock), so
	// that no position drawn before is left out.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, eventsLock); err != nil {
		return err
	}
	var last int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(pos), 0) FROM events`).Scan(&last); err != nil {
		return err
	}
	k, err := orchestrator.NewEventIDKey(last)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO event_id_key (id, secret, legacy_below) VALUES (1, $1, $2)`, k.Secret[:], k.LegacyBelow)
	return err
}

// EventIDKey implements orchestrator.EventStore.
func (s *Store) EventIDKey(ctx context.Context) (orchestrator.EventIDKey, error) {
	var k orchestrator.EventIDKey
	var secret []byte
	if err := s.pool.QueryRow(ctx, `SELECT secret, legacy_below FROM event_id_key WHERE id = 1`).Scan(&secret, &k.LegacyBelow); err != nil {
		return k, s.fail("event id key", err)
	}
	copy(k.Secret[:], secret)
	return k, nil
}
