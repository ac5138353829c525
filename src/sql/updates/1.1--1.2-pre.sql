/* customer_unify 1.1 -> 1.2
 *
 * Assembled by `make sql` from this file, src/sql/catalog/merge.sql, the
 * pieces (SQL_PIECES), src/sql/registry.sql and
 * src/sql/updates/1.1--1.2-post.sql; edit those, not this file.
 *
 * 1.2 adds the merge operation, the normalizers and the matcher.  Live
 * migrations, their step logs and checkpoints are carried over unchanged:
 * 1.1's catalog tables keep their shape, and every function is replaced in
 * place with the same signature.
 */
\echo Use "ALTER EXTENSION customer_unify UPDATE TO '1.2'" to load this file. \quit
