-- transferd schema 15: a call's ended transfers that still have work to
-- do, for a create's look at whether one of them owes the call its end
-- state (orchestrator.Transfer.HoldsCall).
--
-- The look read the call's newest transfer by id. Ids begin with the
-- clock of the process that made them, which may be stepped back, or be
-- another replica's that runs ahead: the look could find a transfer with
-- a later id, ended owing nothing, and let a new transfer by while one
-- created after it still owed the call its end state. Every ended
-- transfer that owes its call is open (Transfer.Open), and few are: this
-- index holds only those, with the id to report the newest first. An
-- active transfer has no entry, so that its saves never write to it; the
-- unique index transfers_active_call keeps the active one. The states
-- are comparisons, not IN the list, for the reason of migration 6: a
-- save evaluates the predicate, and a list costs it a temporary b-tree.
CREATE INDEX transfers_owing_call ON transfers (call_key, id)
	WHERE open = 1 AND (state = 'cancelled' OR state = 'completed' OR state = 'failed');
