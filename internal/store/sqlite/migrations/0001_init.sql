-- transferd schema 1: transfers, their pending signals, idempotency keys.
--
-- A transfer is kept whole as JSON in `record` (the one source of truth, so
-- that a new Transfer field needs no migration); the other columns copy
-- the fields that queries select or order by. Times in columns are UTC
-- text of fixed width ('2006-01-02T15:04:05.000000000Z'), so that text
-- order is time order, to the nanosecond.
--
-- The state list below must equal orchestrator.State.Terminal (a test
-- checks it): ('cancelled', 'completed', 'failed').

CREATE TABLE transfers (
	id            TEXT    NOT NULL PRIMARY KEY,  -- tr_…: sorts by creation time
	version       INTEGER NOT NULL,
	state         TEXT    NOT NULL,
	provider      TEXT    NOT NULL,              -- lower case, for the List filter
	call_key      TEXT    NOT NULL,              -- orchestrator.CallKey
	owner         TEXT    NOT NULL DEFAULT '',
	lease_expires TEXT    NOT NULL,
	created_at    TEXT    NOT NULL,
	updated_at    TEXT    NOT NULL,
	record        TEXT    NOT NULL               -- JSON of the whole orchestrator.Transfer
) STRICT;

-- At most one non-terminal transfer per call, enforced by the database so
-- that two concurrent Creates cannot both pass a check.
CREATE UNIQUE INDEX transfers_active_call ON transfers (call_key)
	WHERE state NOT IN ('cancelled', 'completed', 'failed');

-- Acquire scans the non-terminal transfers oldest first.
CREATE INDEX transfers_active ON transfers (id)
	WHERE state NOT IN ('cancelled', 'completed', 'failed');

-- Purge finds the terminal transfers last updated before a cut-off.
CREATE INDEX transfers_terminal_updated ON transfers (updated_at)
	WHERE state IN ('cancelled', 'completed', 'failed');

-- A client's pending signal (complete, cancel); at most one per transfer.
CREATE TABLE signals (
	transfer_id TEXT NOT NULL PRIMARY KEY REFERENCES transfers (id) ON DELETE CASCADE,
	signal      TEXT NOT NULL
) STRICT;

CREATE TABLE idempotency (
	scope        TEXT    NOT NULL,
	key          TEXT    NOT NULL,
	request_hash TEXT    NOT NULL,
	created_at   TEXT    NOT NULL,
	status       INTEGER,                        -- NULL while the first request is served
	location     TEXT    NOT NULL DEFAULT '',
	body         BLOB,
	PRIMARY KEY (scope, key)
) STRICT;

CREATE INDEX idempotency_created ON idempotency (created_at);
