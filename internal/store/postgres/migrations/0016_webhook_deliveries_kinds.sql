-- transferd schema 16: the lists of webhook deliveries that select few of
-- them read only those.
--
-- A store with webhooks keeps every delivery for the retention, nearly
-- all of them delivered: millions. The API's default list (a tenant's
-- failing and dead ones), a list of the pending or dead ones, and one
-- transfer's deliveries read webhook_deliveries_tenant in list order and
-- filtered the rows, so that a page they could not fill read all of a
-- tenant's deliveries (a second and more at a million transfers' worth).
-- Now:
--
-- webhook_deliveries_status holds the deliveries that are not delivered
-- (the pending ones and the dead letters), by status in list order: a
-- list of pending or dead ones reads one branch of it per status, merged
-- (deliveriesQuery). A delivered row version has no entry.
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (tenant, status, pos, id) WHERE status <> 'delivered';
-- webhook_deliveries_failing holds the pending deliveries whose last
-- attempt failed (the failing column), in list order.
CREATE INDEX webhook_deliveries_failing ON webhook_deliveries (tenant, pos, id) WHERE failing;
-- webhook_deliveries_transfer holds every delivery by transfer, in list
-- order: a transfer's deliveries, whatever else the list filters on.
CREATE INDEX webhook_deliveries_transfer ON webhook_deliveries (transfer_id, pos, id);
