-- transferd schema 6: the partial unique index of active calls tests the
-- state with three comparisons instead of NOT IN a list of three. SQLite
-- codes a list of more than two constants as a temporary b-tree, built
-- afresh at every execution, and a save's UPDATE evaluates the predicate
-- for the old row and the new: two temporary b-trees per save, about 2 %
-- of transferd's CPU under load. The comparisons mean the same; queries
-- repeat them word for word (store.go's nonTerminal). Building the index
-- reads every transfer once, at the first start of this version.
DROP INDEX transfers_active_call;
CREATE UNIQUE INDEX transfers_active_call ON transfers (call_key)
	WHERE state <> 'cancelled' AND state <> 'completed' AND state <> 'failed';
