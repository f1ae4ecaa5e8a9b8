-- transferd schema 10: the list filter's user matches in any letter case,
-- as the call key (schema 9) and the PBX do, so call_user is kept in lower
-- case, as call_domain has been since schema 3. The API accepts ASCII
-- users only, which SQLite's lower() folds as Go's strings.ToLower does.
UPDATE transfers SET call_user = lower(call_user) WHERE call_user <> lower(call_user);
