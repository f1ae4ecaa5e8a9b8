-- transferd schema 2: ownership by per-replica heartbeat, cleanup
-- obligations, idempotency reservations linked to their transfers.
--
-- A transfer was owned through a lease of its own (lease_expires, renewed
-- per transfer). Now a replica renews one heartbeat row in `replicas`, and
-- a transfer whose owner has no live heartbeat may be claimed by another.
-- A transfer stays claimable while it is open (orchestrator Transfer.Open:
-- not terminal, or terminal with a cleanup obligation), which the store
-- copies into `open` at every save.

CREATE TABLE replicas (
	name    text        NOT NULL PRIMARY KEY,
	expires timestamptz NOT NULL       -- the heartbeat's end
);

ALTER TABLE transfers ADD COLUMN open boolean NOT NULL DEFAULT false;  -- Transfer.Open
-- Records saved before this schema carry no cleanup obligation: open is
-- exactly "not terminal".
UPDATE transfers SET open = true WHERE state NOT IN ('cancelled', 'completed', 'failed');

-- Leases are per replica now; nothing reads or writes this column.
ALTER TABLE transfers DROP COLUMN lease_expires;

-- Claim scans the open transfers (a few: those in flight or owing a
-- cleanup) and Signalled those of one owner.
DROP INDEX transfers_active;
CREATE INDEX transfers_open_owner ON transfers (owner, id) WHERE open;

-- Purge finds the closed transfers (terminal, no obligation) last updated
-- before a cut-off.
DROP INDEX transfers_terminal_updated;
CREATE INDEX transfers_closed_updated ON transfers (updated_at) WHERE NOT open;

-- owner: the replica serving the request (SettleIdempotency settles the
-- reservations of dead replicas). transfer_id: the transfer the request
-- created, written by the same transaction as the transfer (NULL until
-- then). response_transfer_id: IdempotentResponse.TransferID.
ALTER TABLE idempotency
	ADD COLUMN owner text NOT NULL DEFAULT '',
	ADD COLUMN transfer_id text COLLATE "C",
	ADD COLUMN response_transfer_id text NOT NULL DEFAULT '';

-- SettleIdempotency looks at the reservations still waiting for their
-- response.
CREATE INDEX idempotency_pending ON idempotency (owner) WHERE status IS NULL;
