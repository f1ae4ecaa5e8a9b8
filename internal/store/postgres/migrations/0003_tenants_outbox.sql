-- transferd schema 3: tenants, the columns every list filter selects on,
-- and the event outbox.
--
-- Every transfer belongs to a tenant (orchestrator.Transfer.Tenant; records
-- older than tenants belong to 'default'). The one-active-transfer-per-call
-- rule is per tenant: call_key becomes orchestrator.TenantCallKey,
-- '<tenant>|' before the old key.
--
-- The new columns copy fields of the request, which never changes after
-- Create: Update does not rewrite them.
ALTER TABLE transfers
	ADD COLUMN tenant      text NOT NULL DEFAULT 'default',
	ADD COLUMN external_id text NOT NULL DEFAULT '',  -- Request.ExternalID
	ADD COLUMN call_domain text NOT NULL DEFAULT '',  -- Request.Call.Domain, lower case
	ADD COLUMN call_user   text NOT NULL DEFAULT '',  -- Request.Call.User
	ADD COLUMN call_id     text NOT NULL DEFAULT '',  -- Request.Call.CallID
	ADD COLUMN target      text NOT NULL DEFAULT '';  -- Request.Target

-- Records saved by a transferd that already knew tenants carry theirs.
UPDATE transfers SET
	tenant      = COALESCE(NULLIF(record->>'Tenant', ''), 'default'),
	external_id = COALESCE(record->'Request'->>'external_id', ''),
	call_domain = lower(COALESCE(record->'Request'->'call'->>'domain', '')),
	call_user   = COALESCE(record->'Request'->'call'->>'user', ''),
	call_id     = COALESCE(record->'Request'->'call'->>'call_id', ''),
	target      = COALESCE(record->'Request'->>'target', ''),
	call_key    = COALESCE(NULLIF(record->>'Tenant', ''), 'default') || '|' || call_key;

-- Every list the API offers is one tenant's transfers, newest first (id
-- descending, the cursor an id), with at most one filter: each has an
-- index that yields its rows in that order, so that a page reads about
-- as many rows as it returns whatever the number stored. created_at rides
-- in the tenant index so that a creation-time range is checked in the
-- index. Several states are read as one ordered branch per state
-- (store.go, List). id is COLLATE "C" (schema 1): the indexes order it
-- by bytes, as the cursor compares.
CREATE INDEX transfers_tenant      ON transfers (tenant, id, created_at);
CREATE INDEX transfers_state       ON transfers (tenant, state, id);
CREATE INDEX transfers_provider    ON transfers (tenant, provider, id);
CREATE INDEX transfers_external_id ON transfers (tenant, external_id, id);
CREATE INDEX transfers_call        ON transfers (tenant, call_domain, call_user, id);
CREATE INDEX transfers_call_id     ON transfers (tenant, call_id, id);
CREATE INDEX transfers_target      ON transfers (tenant, target, id);

-- The outbox: the events a save records, written in the save's
-- transaction. pos is the global position. Positions are drawn before
-- commit, so two saves could commit out of position order and a reader
-- could see a position before a lower one that commits later (and then
-- skip it for good); saves therefore take a transaction-scoped advisory
-- lock before writing events (store.go, writeEvents), which makes the
-- commit order the position order. snapshot is the record as saved with
-- the events. They go with their transfer when Purge deletes it.
CREATE TABLE events (
	pos         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id          text        NOT NULL,
	tenant      text        NOT NULL,
	transfer_id text COLLATE "C" NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
	seq         bigint      NOT NULL,
	type        text        NOT NULL,
	at          timestamptz NOT NULL,
	from_state  text        NOT NULL DEFAULT '',
	to_state    text        NOT NULL DEFAULT '',
	snapshot    jsonb       NOT NULL
);

-- A tenant's stream, and one transfer's events (also what the cascade of
-- a purge deletes by).
CREATE INDEX events_tenant   ON events (tenant, pos);
CREATE INDEX events_transfer ON events (transfer_id, pos);
