-- transferd schema 5: an index serving "provider + state" lists (a
-- tenant's transfers of one provider in one or several states, newest
-- first). With only transfers_provider and transfers_state, SQLite walked
-- one and filtered on the other: 26 ms p99 at 100k stored, and a walk of
-- every transfer of the provider when the state is rare. A save that
-- changes the state rewrites this index as it does transfers_state.
CREATE INDEX transfers_provider_state ON transfers (tenant, provider, state, id);
