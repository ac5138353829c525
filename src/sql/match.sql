-------------------------------------------------------------------------------
-- match.sql: the matcher's primitives (src/match.c).  The merge operation's
-- match rules are passes of: block keys (SQL expressions equal, non-NULL and
-- non-blank between two records), a score over the two records and a
-- threshold; the pairs every pass accepts are edges, and clusters() makes
-- identities of them, transitively.
--
-- No SET search_path: these run no SQL, and the similarity functions are
-- called once per compared pair (a SET clause would cost a GUC save and
-- restore on every call).
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.jaro(text, text) RETURNS float8
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_jaro';
COMMENT ON FUNCTION customer_unify.jaro(text, text) IS
    'Jaro similarity (0..1) of two strings, on code points, case as given: 1 for two empty strings, 0 when one is empty.';

CREATE OR REPLACE FUNCTION customer_unify.jaro_winkler(text, text) RETURNS float8
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_jaro_winkler';
COMMENT ON FUNCTION customer_unify.jaro_winkler(text, text) IS
    'Jaro-Winkler similarity (0..1) of two strings, on code points, case as given: Jaro plus 0.1 per equal leading character (at most 4) of what is left to 1, when Jaro > 0.7.';

CREATE OR REPLACE FUNCTION customer_unify.clusters(a bigint[], b bigint[], max_size int DEFAULT NULL)
    RETURNS TABLE (node bigint, cluster bigint, size int, oversized boolean)
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_clusters';
COMMENT ON FUNCTION customer_unify.clusters(bigint[], bigint[], int) IS
    'Connected components of the edges (a[i], b[i]): each node of an edge once, the smallest node id of its component, the component''s size, and whether it is larger than max_size (NULL: never). A NULL array counts as empty.';
