-- transferd schema 12: the key the event stream's ids are made with
-- (orchestrator.EventIDKey): the ids were outbox positions, which every
-- tenant's events share, so that a tenant could tell from the gaps between
-- its own how many events the others made. One row, made by the store at
-- its first start on this schema (Go's crypto/rand makes the secret), with
-- the last position of the outbox then: plain-number ids up to it, which
-- older versions sent, are still accepted.
CREATE TABLE event_id_key (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	secret       BLOB    NOT NULL CHECK (length(secret) = 32),
	legacy_below INTEGER NOT NULL
) STRICT;
