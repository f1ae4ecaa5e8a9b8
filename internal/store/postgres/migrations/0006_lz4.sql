-- transferd schema 6: records compressed with lz4.
--
-- A record (about 2 KB of JSON) is written with every save, and again as
-- the snapshot of each event the save records: pglz, PostgreSQL's default
-- compression, cost the server about 30 µs per value, a sixth of its CPU
-- per transfer. lz4 compresses about as well for a fraction of the CPU.
-- Values already stored keep their compression and stay readable. A
-- server built without lz4 (feature_not_supported) or older than
-- PostgreSQL 14 (syntax_error) keeps pglz.
DO $$
BEGIN
	ALTER TABLE transfers ALTER COLUMN record SET COMPRESSION lz4;
	ALTER TABLE events ALTER COLUMN snapshot SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
	NULL;
END
$$;
