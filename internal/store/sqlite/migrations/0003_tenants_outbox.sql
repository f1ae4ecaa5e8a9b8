-- transferd schema 3: tenants, the columns every list filter selects on,
-- and the event outbox.
--
-- Every transfer belongs to a tenant (orchestrator.Transfer.Tenant; records
-- older than tenants belong to 'default'). The one-active-transfer-per-call
-- rule is per tenant: call_key becomes orchestrator.TenantCallKey,
-- '<tenant>|' before the old key.
--
-- The new columns copy fields of the request, which never changes after
-- Create: Update does not rewrite them (nor their indexes).
ALTER TABLE transfers ADD COLUMN tenant      TEXT NOT NULL DEFAULT 'default';
ALTER TABLE transfers ADD COLUMN external_id TEXT NOT NULL DEFAULT '';  -- Request.ExternalID
ALTER TABLE transfers ADD COLUMN call_domain TEXT NOT NULL DEFAULT '';  -- Request.Call.Domain, lower case
ALTER TABLE transfers ADD COLUMN call_user   TEXT NOT NULL DEFAULT '';  -- Request.Call.User
ALTER TABLE transfers ADD COLUMN call_id     TEXT NOT NULL DEFAULT '';  -- Request.Call.CallID
ALTER TABLE transfers ADD COLUMN target      TEXT NOT NULL DEFAULT '';  -- Request.Target

-- Records saved by a transferd that already knew tenants carry theirs.
UPDATE transfers SET
	tenant      = COALESCE(NULLIF(json_extract(record, '$.Tenant'), ''), 'default'),
	external_id = COALESCE(json_extract(record, '$.Request.external_id'), ''),
	call_domain = lower(COALESCE(json_extract(record, '$.Request.call.domain'), '')),
	call_user   = COALESCE(json_extract(record, '$.Request.call.user'), ''),
	call_id     = COALESCE(json_extract(record, '$.Request.call.call_id'), ''),
	target      = COALESCE(json_extract(record, '$.Request.target'), '');
UPDATE transfers SET call_key = tenant || '|' || call_key;

-- Every list the API offers is one tenant's transfers, newest first (id
-- descending, the cursor an id), with at most one filter: each has an
-- index that yields its rows in that order, so that a page reads about
-- as many rows as it returns whatever the number stored. created_at rides
-- in the tenant index so that a creation-time range is checked without
-- reading the rows. Several states are read as one ordered branch per
-- state (store.go, List).
CREATE INDEX transfers_tenant      ON transfers (tenant, id, created_at);
CREATE INDEX transfers_state       ON transfers (tenant, state, id);
CREATE INDEX transfers_provider    ON transfers (tenant, provider, id);
CREATE INDEX transfers_external_id ON transfers (tenant, external_id, id);
CREATE INDEX transfers_call        ON transfers (tenant, call_domain, call_user, id);
CREATE INDEX transfers_call_id     ON transfers (tenant, call_id, id);
CREATE INDEX transfers_target      ON transfers (tenant, target, id);

-- The outbox: the events a save records, written in the save's
-- transaction. pos is the global position (AUTOINCREMENT: never reused,
-- also after the newest events were purged, so a client's Last-Event-ID
-- never names a later event). The single writer connection commits in
-- pos order, so a reader never sees a position before a lower one.
-- snapshot is the record as saved with the events. They go with their
-- transfer when Purge deletes it.
CREATE TABLE events (
	pos         INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT    NOT NULL,
	tenant      TEXT    NOT NULL,
	transfer_id TEXT    NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
	seq         INTEGER NOT NULL,
	type        TEXT    NOT NULL,
	at          TEXT    NOT NULL,
	from_state  TEXT    NOT NULL DEFAULT '',
	to_state    TEXT    NOT NULL DEFAULT '',
	snapshot    TEXT    NOT NULL
) STRICT;

-- A tenant's stream, and one transfer's events (also what the cascade of
-- a purge deletes by).
CREATE INDEX events_tenant   ON events (tenant, pos);
CREATE INDEX events_transfer ON events (transfer_id, pos);
