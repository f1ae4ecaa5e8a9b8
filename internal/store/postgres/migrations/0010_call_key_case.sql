-- transferd schema 10: a call's key folds its domain and user to lower case
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
-- compared with the others. lower() is given the "C" collation, which
-- folds ASCII letters alone, as Go's strings.ToLower folds the ASCII
-- domains and users the API accepts, whatever the database's locale (a
-- Turkish one folds "I" into a dotless "ı").
UPDATE transfers SET call_key = lower(call_key COLLATE "C")
WHERE state NOT IN ('cancelled', 'completed', 'failed')
	AND call_key NOT LIKE '%||%' AND call_key <> lower(call_key COLLATE "C")
	AND NOT EXISTS (SELECT 1 FROM transfers o WHERE o.call_key = lower(transfers.call_key COLLATE "C")
		AND o.state NOT IN ('cancelled', 'completed', 'failed'))
	AND NOT EXISTS (SELECT 1 FROM transfers o WHERE o.id < transfers.id
		AND o.state NOT IN ('cancelled', 'completed', 'failed')
		AND o.call_key <> lower(o.call_key COLLATE "C") AND lower(o.call_key COLLATE "C") = lower(transfers.call_key COLLATE "C"));
