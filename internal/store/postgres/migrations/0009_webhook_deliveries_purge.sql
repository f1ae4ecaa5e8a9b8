-- transferd schema 9: delivered and dead webhook deliveries are purged past
-- TRANSFERD_RETENTION (Store.PurgeDeliveries), by finished_at: when the
-- delivery stopped being pending (the time of the attempt that delivered
-- it or gave it up), NULL while it is pending. Not created_at: a delivery
-- is pending up to its maximum age, and a redelivery makes one of any age
-- pending again. The purge reads webhook_deliveries_finished, which holds
-- only finished deliveries, in finished_at order; queries repeat its
-- predicate. The deliveries finished before this version take finished_at
-- from their record's UpdatedAt: the first start of this version reads
-- and rewrites every finished delivery once, holding the table's lock
-- meanwhile. A replica of the older version still running afterwards
-- finishes deliveries without finished_at, which the purge never deletes:
-- stop the older replicas first.
ALTER TABLE webhook_deliveries ADD COLUMN finished_at timestamptz;
UPDATE webhook_deliveries SET finished_at = coalesce((record->>'UpdatedAt')::timestamptz, now())
	WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';
