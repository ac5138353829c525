-------------------------------------------------------------------------------
-- catalog/normalize-types.sql: the types 1.2 added for the normalizers (fresh
-- install and update alike; the functions on them are in normalize.sql).
-------------------------------------------------------------------------------
CREATE TYPE customer_unify.person_name AS (first_name text, last_name text);
COMMENT ON TYPE customer_unify.person_name IS
    'A person''s name in two parts, as split_name returns it and join_name takes it.';
