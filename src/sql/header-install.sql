/* customer_unify 1.3: the engine (catalog, phases, sync triggers, copy,
 * verify, guard), the split and merge operations on it, the normalizers
 * and the matcher.
 *
 * Assembled by `make sql` from src/sql/catalog.sql and the pieces listed in
 * the Makefile's SQL_PIECES; edit those, not this file.
 *
 * Orchestration is SQL and PL/pgSQL; the hot paths (sync triggers, the batch
 * copy engine, the compatibility-view router) and every write of the catalog
 * are C functions in the module.  Every generated statement quotes
 * identifiers (format('%I'), quote_ident) and every function pins
 * search_path, except the documented exceptions in src/sql/engine.sql.
 */
\echo Use "CREATE EXTENSION customer_unify" to load this file. \quit
