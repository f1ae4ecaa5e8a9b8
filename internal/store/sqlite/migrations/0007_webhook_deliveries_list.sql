-- transferd schema 7: the operators' listing of webhook deliveries is in
-- (pos, id) order, descending, and its cursor compares both: a tenant with
-- several endpoints has one delivery per endpoint of each event, all with
-- the event's pos. webhook_deliveries_tenant was (tenant, pos): it served
-- the order by pos alone and the cursor's pos, and each pos's deliveries
-- were sorted in a temporary b-tree. With id it serves both whole.
DROP INDEX webhook_deliveries_tenant;
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, pos, id);
