package postgres

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// SetPurgeBatch makes Purge delete at most n rows per statement.
func SetPurgeBatch(s *Store, n int) { s.purgeBatch = n }

// ListQuery and EventsQuery are the statements of List and Events, for the
// tests that check their plans.
var (
	ListQuery   = listQuery
	EventsQuery = eventsQuery
)

// MaxConns is the size of the store's pool.
func MaxConns(s *Store) int32 { return s.pool.Config().MaxConns }
