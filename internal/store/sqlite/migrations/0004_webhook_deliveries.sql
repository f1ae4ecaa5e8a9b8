-- transferd schema 4: webhook deliveries and each endpoint's cursor over
-- the outbox (internal/webhooks). A delivery's full record is JSON in
-- record; the columns copy what Claim, Backlog and the listing select on.
CREATE TABLE webhook_cursors (
	endpoint_key TEXT PRIMARY KEY,
	pos          INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
	id           TEXT PRIMARY KEY,
	tenant       TEXT NOT NULL,
	endpoint_key TEXT NOT NULL,
	transfer_id  TEXT NOT NULL,
	seq          INTEGER NOT NULL,
	pos          INTEGER NOT NULL,
	status       TEXT NOT NULL,
	next_attempt TEXT NOT NULL,
	lease_until  TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	record       TEXT NOT NULL
);
-- Claim: due pending deliveries, oldest first, and the head test per
-- endpoint and transfer.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (pos) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_head ON webhook_deliveries (endpoint_key, transfer_id, seq) WHERE status = 'pending';
-- The operators' listing: a tenant's deliveries, newest first.
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, pos);
