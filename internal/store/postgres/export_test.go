package postgres

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList
