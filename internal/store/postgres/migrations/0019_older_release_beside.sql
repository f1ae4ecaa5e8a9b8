-- transferd schema 19: a replica of a release before schema 18 under the
-- name a newer process took over no longer renews that process's
-- heartbeat.
--
-- A release before schema 18 knows no token: its heartbeat's upsert sets
-- `expires` alone and leaves the token as it finds it. Running under the
-- name a newer process had taken over (a rolling upgrade that reused a
-- name, two processes given one TRANSFERD_INSTANCE_ID), it renewed the
-- newer process's row, which saw nothing amiss, and both drove the name's
-- transfers. Every write that sets the token (every release since schema
-- 18, whose heartbeats always do) now stamps the row with the end it
-- writes (replicas_a_stamp, fired first: triggers fire in the order of
-- their names). A write that extends a live row holding a token without
-- stamping it is an older release's, and is refused: that replica's
-- heartbeat fails, and it sends nothing more once its last one runs out
-- (every release since leases were per replica does so), while the newer
-- process drives the name's transfers, adopting what the older one
-- created once it can send nothing more. On a row that has run out (the
-- newer process stopped: a roll back to the older release) the older
-- release's write is taken, and the row is its, without a token. A
-- write that shortens the end (a release's Release, whichever version)
-- is never refused. `now()` is the server's clock, the one replicas tell
-- time by (orchestrator.Store.Heartbeat's now).
ALTER TABLE replicas ADD COLUMN stamp timestamptz;

CREATE FUNCTION replicas_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.stamp := NEW.expires;
	RETURN NEW;
END $$;

CREATE FUNCTION replicas_older_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.expires > OLD.expires AND NEW.stamp IS DISTINCT FROM NEW.expires THEN
		IF OLD.token <> '' AND OLD.expires > now() THEN
			RAISE EXCEPTION 'transferd: a process of a newer release runs under replica name %', OLD.name
				USING ERRCODE = 'TR001',
				HINT = 'each process needs a TRANSFERD_INSTANCE_ID of its own; this one stops sending once its heartbeat runs out';
		END IF;
		NEW.token := '';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER replicas_a_stamp BEFORE UPDATE OF token ON replicas
	FOR EACH ROW EXECUTE PROCEDURE replicas_stamp();
CREATE TRIGGER replicas_b_older_release BEFORE UPDATE ON replicas
	FOR EACH ROW EXECUTE PROCEDURE replicas_older_release();
