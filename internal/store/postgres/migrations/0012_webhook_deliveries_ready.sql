-- transferd schema 12: a claim reads only the deliveries it may take.
-- ready_at is set on the first pending delivery of each endpoint and
-- transfer (the head, the only one a claim may take), to when it becomes
-- claimable: the later of next_attempt and lease_until. Every other
-- delivery has NULL. Before, a claim walked the pending deliveries in pos
-- order and tested each: an endpoint in back-off, or one skipped at its
-- share of attempts, with a backlog of thousands made every claim read
-- them all. Claims now read webhook_deliveries_ready in due order, and,
-- when the earliest due are all to skipped endpoints, each other
-- endpoint's own in webhook_deliveries_ready_endpoint. The store keeps
-- ready_at whenever a delivery is inserted, claimed, finished or
-- redelivered, under a lock per endpoint and transfer; a replica of an
-- older version does not, so stop the older replicas first.
ALTER TABLE webhook_deliveries ADD COLUMN ready_at timestamptz;
UPDATE webhook_deliveries d SET ready_at = greatest(d.next_attempt, d.lease_until)
	WHERE d.status = 'pending' AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending'
		AND e.endpoint_key = d.endpoint_key AND e.transfer_id = d.transfer_id AND e.seq < d.seq);
CREATE INDEX webhook_deliveries_ready ON webhook_deliveries (ready_at, pos, id) WHERE ready_at IS NOT NULL;
CREATE INDEX webhook_deliveries_ready_endpoint ON webhook_deliveries (endpoint_key, ready_at, pos, id) WHERE ready_at IS NOT NULL;
-- The claim's old walk; DeliveryBacklog counts in webhook_deliveries_head.
DROP INDEX webhook_deliveries_pending;
