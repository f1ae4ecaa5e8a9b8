-- transferd schema 14: webhook delivery records compressed with lz4, as
-- transfers' records and events' snapshots are since schema 6.
--
-- A delivery's record (about 2.3 KB of JSON: its copy of the event) is
-- written three times, at its enqueue, its claim and its result, and was
-- compressed with pglz each time: with every event delivered, eight
-- deliveries per transfer, that was about a fifth of the database's CPU
-- per transfer. Values already stored keep their compression and stay
-- readable. A server built without lz4 (feature_not_supported) or older
-- than PostgreSQL 14 (syntax_error) keeps pglz.
DO $$
BEGIN
	ALTER TABLE webhook_deliveries ALTER COLUMN record SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
	NULL;
END
$$;
