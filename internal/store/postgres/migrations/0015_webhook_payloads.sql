-- transferd schema 15: a webhook delivery's payload kept apart from its
-- record.
--
-- The record carried its copy of the event, the body of every attempt
-- (about 1.4 KB, a third more as base64 in JSON), and was written whole
-- four times: at its enqueue, its promotion, its claim and its result;
-- parsed as jsonb, compressed and logged each time. The payload is now
-- written once, in webhook_payloads, and read by the claims alone; the
-- record (rec) holds the rest. The deliveries stored before keep the
-- payload in their record too, until their next write; theirs is copied
-- here. A delivery without a row here has an empty body.
--
-- The column is renamed so that a replica of an older version, which
-- reads the payload from the record, fails at its first statement on
-- deliveries (and leaves them to the replicas of this one) rather than
-- sending a delivery of this version without its body.
CREATE TABLE webhook_payloads (
	id      text  PRIMARY KEY, -- the delivery's
	payload bytea NOT NULL
);
INSERT INTO webhook_payloads (id, payload)
	SELECT id, decode(record->>'Payload', 'base64') FROM webhook_deliveries
	WHERE jsonb_typeof(record->'Payload') = 'string' AND record->>'Payload' <> '';
ALTER TABLE webhook_deliveries RENAME COLUMN record TO rec;
-- Compressed as the records are (schema 14), where the server can.
DO $$
BEGIN
	ALTER TABLE webhook_payloads ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
	NULL;
END
$$;
