package postgres

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// SetPurgeBatch makes Purge delete at most n rows per statement.
func SetPurgeBatch(s *Store, n int) { s.purgeBatch = n }
