-- transferd schema 11: the list filter's user matches in any letter case,
-- as the call key (schema 10) and the PBX do, so call_user is kept in lower
-- case, as call_domain has been since schema 3. lower() is given the "C"
-- collation, which folds ASCII letters alone, as Go's strings.ToLower folds
-- the ASCII users the API accepts, whatever the database's locale.
UPDATE transfer_keys SET call_user = lower(call_user COLLATE "C") WHERE call_user <> lower(call_user COLLATE "C");
