/* customer_unify 1.2 -> 1.3
 *
 * Assembled by `make sql` from this file, the pieces (SQL_PIECES),
 * src/sql/registry.sql and src/sql/updates/1.2--1.3-post.sql; edit those,
 * not this file.
 *
 * 1.3 makes the merge's matching set-based and carries live migrations
 * over unchanged: 1.2's catalog tables keep their shape, every function is
 * replaced in place with the same signature, and the post step regenerates
 * the functions a live merge keeps in its work schema.  status() gains
 * its job's state and error (a new result type: dropped here, created by
 * api.sql); the progress view gains the job's columns at its end;
 * split() gains key_index (dropped here, created by split.sql).
 */
\echo Use "ALTER EXTENSION customer_unify UPDATE TO '1.3'" to load this file. \quit

DROP FUNCTION customer_unify.status(text);
DROP FUNCTION customer_unify.split(text, regclass, text, text[], text, text, text);
