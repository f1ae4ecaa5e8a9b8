-- transferd schema 9: a call's key folds its domain and user to lower case
-- (orchestrator.CallKey), as the PBX matches them, so that ACME.example
-- and acme.example are one call to the rule of one active transfer per
-- call. The active transfers' keys are folded here: one begun before this
-- version still blocks a second transfer of its call. A key that holds a
-- provider's call id (after "||") keeps its case. Of keys that fold into
-- one (the same call moved twice at once before this version), the oldest
-- transfer's is folded, so that the call stays blocked however it is
-- spelt, and the others keep theirs until they end: folding them too
-- would break the unique index. An active key already folded wins over
-- them all. Only keys with upper-case letters, which are rare, are
-- compared with the others.
UPDATE transfers SET call_key = lower(call_key)
WHERE state <> 'cancelled' AND state <> 'completed' AND state <> 'failed'
	AND call_key NOT LIKE '%||%' AND call_key <> lower(call_key)
	AND NOT EXISTS (SELECT 1 FROM transfers o WHERE o.call_key = lower(transfers.call_key)
		AND o.state <> 'cancelled' AND o.state <> 'completed' AND o.state <> 'failed')
	AND NOT EXISTS (SELECT 1 FROM transfers o WHERE o.id < transfers.id
		AND o.state <> 'cancelled' AND o.state <> 'completed' AND o.state <> 'failed'
		AND o.call_key <> lower(o.call_key) AND lower(o.call_key) = lower(transfers.call_key));
