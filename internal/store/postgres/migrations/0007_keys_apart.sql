-- transferd schema 7: a save writes less.
--
-- Every save changes a transfer's state, so PostgreSQL can never update
-- its row in place (a HOT update): it writes a new row version and adds
-- an entry for it to every index of the table. Measured at 32 transfers
-- at a time, that index maintenance, the foreign key check of every event
-- and jsonb's parsing of every record were half the server's CPU.
--
-- 1. The columns the request fixes at Create (the list filters) and their
--    six indexes move to transfer_keys, written once per transfer: a save
--    adds entries to five indexes instead of eleven. transfers keeps
--    tenant and provider, which the state indexes need.
-- 2. events loses its foreign key: its check read and locked the
--    transfer's row once per event. Rows are only ever inserted by the
--    statement that saved their transfer, and Purge deletes a transfer's
--    events with it.
-- 3. events' primary key becomes (tenant, pos), which also serves a
--    tenant's stream in position order: a new event enters two indexes
--    instead of three (events_tenant was (tenant, pos) beside a key on
--    pos that no query used).
-- 4. Records and snapshots are json, not jsonb: the server checks the
--    text and stores it, rather than parsing it into a tree on every save
--    and back into text on every read. Nothing reads inside them in SQL
--    but the migrations (->> works on json too).
--
-- The type change rewrites transfers and events once: the migration takes
-- time in proportion to the history kept (README, "Storage, replicas and
-- crashes").
CREATE TABLE transfer_keys (
	id          text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES transfers (id) ON DELETE CASCADE,
	tenant      text        NOT NULL,
	provider    text        NOT NULL,  -- lower case
	external_id text        NOT NULL,  -- Request.ExternalID
	call_domain text        NOT NULL,  -- Request.Call.Domain, lower case
	call_user   text        NOT NULL,  -- Request.Call.User
	call_id     text        NOT NULL,  -- Request.Call.CallID
	target      text        NOT NULL,  -- Request.Target
	created_at  timestamptz NOT NULL
);

INSERT INTO transfer_keys (id, tenant, provider, external_id, call_domain, call_user, call_id, target, created_at)
	SELECT id, tenant, provider, external_id, call_domain, call_user, call_id, target, created_at FROM transfers;

CREATE INDEX transfer_keys_tenant      ON transfer_keys (tenant, id, created_at);
CREATE INDEX transfer_keys_provider    ON transfer_keys (tenant, provider, id);
CREATE INDEX transfer_keys_external_id ON transfer_keys (tenant, external_id, id);
CREATE INDEX transfer_keys_call        ON transfer_keys (tenant, call_domain, call_user, id);
CREATE INDEX transfer_keys_call_id     ON transfer_keys (tenant, call_id, id);
CREATE INDEX transfer_keys_target      ON transfer_keys (tenant, target, id);

DROP INDEX transfers_tenant, transfers_provider, transfers_external_id, transfers_call, transfers_call_id,
	transfers_target;
ALTER TABLE transfers
	DROP COLUMN external_id,
	DROP COLUMN call_domain,
	DROP COLUMN call_user,
	DROP COLUMN call_id,
	DROP COLUMN target,
	DROP COLUMN created_at;

ALTER TABLE transfers ALTER COLUMN record TYPE json USING record::text::json;

-- One ALTER TABLE, so that events is rewritten and its indexes built once.
DROP INDEX events_tenant;
ALTER TABLE events
	DROP CONSTRAINT events_transfer_id_fkey,
	DROP CONSTRAINT events_pkey,
	ADD PRIMARY KEY (tenant, pos),
	ALTER COLUMN snapshot TYPE json USING snapshot::text::json;

-- A new type starts with the default compression: lz4 again (schema 6).
DO $$
BEGIN
	ALTER TABLE transfers ALTER COLUMN record SET COMPRESSION lz4;
	ALTER TABLE events ALTER COLUMN snapshot SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
	NULL;
END
$$;
