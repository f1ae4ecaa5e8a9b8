-- transferd schema 8: the operators' listing of webhook deliveries is in
-- (pos, id) order, descending, and its cursor is a row comparison of both:
-- a tenant with several endpoints has one delivery per endpoint of each
-- event, all with the event's pos. webhook_deliveries_tenant was
-- (tenant, pos): the cursor's id was a filter and each pos's deliveries
-- went through an incremental sort. With id the index serves the order
-- and the row comparison (an index condition) whole.
DROP INDEX webhook_deliveries_tenant;
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, pos, id);
