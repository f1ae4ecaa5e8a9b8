-- transferd schema 1: transfers, their pending signals, idempotency keys.
--
-- A transfer is kept whole as JSON in `record` (the one source of truth, so
-- that a new Transfer field needs no migration, and times keep their
-- nanoseconds); the other columns copy the fields that queries select or
-- order by. timestamptz columns hold microseconds: lease expiry and purge
-- cut-offs are decided to the microsecond.
--
-- The state list below must equal orchestrator.State.Terminal (a test
-- checks it): ('cancelled', 'completed', 'failed').

CREATE TABLE transfers (
	-- tr_…: sorts by creation time; byte order ("C"), whatever the
	-- database's collation, so that the List cursor is exact.
	id            text COLLATE "C" NOT NULL PRIMARY KEY,
	version       bigint      NOT NULL,
	state         text        NOT NULL,
	provider      text        NOT NULL,   -- lower case, for the List filter
	call_key      text        NOT NULL,   -- orchestrator.CallKey
	owner         text        NOT NULL DEFAULT '',
	lease_expires timestamptz NOT NULL,
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL,
	record        jsonb       NOT NULL    -- the whole orchestrator.Transfer
);

-- At most one non-terminal transfer per call, enforced by the database so
-- that concurrent Creates on several replicas cannot both pass a check.
CREATE UNIQUE INDEX transfers_active_call ON transfers (call_key)
	WHERE state NOT IN ('cancelled', 'completed', 'failed');

-- Acquire scans the non-terminal transfers oldest first.
CREATE INDEX transfers_active ON transfers (id)
	WHERE state NOT IN ('cancelled', 'completed', 'failed');

-- Purge finds the terminal transfers last updated before a cut-off.
CREATE INDEX transfers_terminal_updated ON transfers (updated_at)
	WHERE state IN ('cancelled', 'completed', 'failed');

-- A client's pending signal (complete, cancel) for the replica that owns
-- the transfer; at most one per transfer.
CREATE TABLE signals (
	transfer_id text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES transfers (id) ON DELETE CASCADE,
	signal      text NOT NULL
);

CREATE TABLE idempotency (
	scope        text        NOT NULL,
	key          text        NOT NULL,
	request_hash text        NOT NULL,
	created_at   timestamptz NOT NULL,
	status       integer,                  -- NULL while the first request is served
	location     text        NOT NULL DEFAULT '',
	body         bytea,
	PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_created ON idempotency (created_at);
