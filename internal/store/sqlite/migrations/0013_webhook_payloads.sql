-- transferd schema 13: a webhook delivery's payload kept apart from its
-- record.
--
-- The record carried its copy of the event, the body of every attempt
-- (about 1.4 KB, a third more as base64 in JSON): a row of its own page,
-- written whole as a WAL frame at each of the delivery's four writes (its
-- enqueue, its promotion, its claim and its result). The payload is now
-- written once, in webhook_payloads, and read by the claims alone; the
-- record (rec) holds the rest, small enough that the rows written
-- together share pages. The deliveries stored before keep the payload in
-- their record too, until their next write; the store copies theirs here
-- in this migration's transaction (movePayloads: SQLite has no base64
-- decoder). A delivery without a row here has an empty body. A
-- delivery's payload goes with it (the trigger).
--
-- The column is renamed so that a process of an older version, which
-- reads the payload from the record, fails at its first statement on
-- deliveries rather than sending a delivery of this version without its
-- body.
CREATE TABLE webhook_payloads (
	id      TEXT PRIMARY KEY, -- the delivery's
	payload BLOB NOT NULL
);
ALTER TABLE webhook_deliveries RENAME COLUMN record TO rec;
CREATE TRIGGER webhook_payloads_go AFTER DELETE ON webhook_deliveries BEGIN
	DELETE FROM webhook_payloads WHERE id = old.id;
END;
