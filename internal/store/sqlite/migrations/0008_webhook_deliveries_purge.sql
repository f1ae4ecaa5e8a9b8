-- transferd schema 8: delivered and dead webhook deliveries are purged past
-- TRANSFERD_RETENTION (Store.PurgeDeliveries), by finished_at: when the
-- delivery stopped being pending (the time of the attempt that delivered
-- it or gave it up), NULL while it is pending. Not created_at: a delivery
-- is pending up to its maximum age, and a redelivery makes one of any age
-- pending again. The purge reads webhook_deliveries_finished, which holds
-- only finished deliveries, in finished_at order; queries repeat its
-- predicate word for word. The deliveries finished before this version
-- take finished_at from their record's UpdatedAt (to the second), or the
-- time of the migration if it cannot be read: the first start of this
-- version reads every finished delivery once.
ALTER TABLE webhook_deliveries ADD COLUMN finished_at TEXT;
UPDATE webhook_deliveries SET finished_at = coalesce(strftime('%Y-%m-%dT%H:%M:%S', json_extract(record, '$.UpdatedAt')),
	strftime('%Y-%m-%dT%H:%M:%S', 'now')) || '.000000000Z'
	WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';
