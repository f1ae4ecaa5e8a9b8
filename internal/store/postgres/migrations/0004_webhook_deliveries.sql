-- transferd schema 4: webhook deliveries and each endpoint's cursor over
-- the outbox (internal/webhooks). A delivery's full record is jsonb in
-- record; the columns copy what Claim, Backlog and the listing select on.
--
-- The cursor is only correct because the outbox becomes visible in
-- position order (schema 3: saves take an advisory lock before writing
-- events): a dispatcher that read up to position N has seen every event
-- below N, so moving the cursor to N never skips one.
CREATE TABLE webhook_cursors (
	endpoint_key text PRIMARY KEY,
	pos          bigint NOT NULL
);

CREATE TABLE webhook_deliveries (
	id           text PRIMARY KEY,
	tenant       text        NOT NULL,
	endpoint_key text        NOT NULL,
	transfer_id  text COLLATE "C" NOT NULL,
	seq          bigint      NOT NULL,
	pos          bigint      NOT NULL,
	status       text        NOT NULL,
	next_attempt timestamptz NOT NULL,
	lease_until  timestamptz NOT NULL,
	created_at   timestamptz NOT NULL,
	failing      boolean     NOT NULL DEFAULT false, -- pending with a failed last attempt
	record       jsonb       NOT NULL
);
-- Claim: due pending deliveries, oldest first, and the head test per
-- endpoint and transfer.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (pos) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_head ON webhook_deliveries (endpoint_key, transfer_id, seq) WHERE status = 'pending';
-- The operators' listing: a tenant's deliveries, newest first.
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, pos);
