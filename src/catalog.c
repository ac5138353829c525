/*-------------------------------------------------------------------------
 * catalog.c
 *	  The engine's catalog from C: loading a trigger's map (sync_map,
 *	  sync_map_column, migration_relation) and writing catalog rows as the
 *	  extension's owner.  Callers hold an SPI connection.
 *
 *	  Relations are found by OID (migration_relation.relid); the column
 *	  names of a map are resolved against the relation's descriptor by the
 *	  caller, so statements quote the names the catalog has now.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "customer_unify.h"

static char *
spi_text(int row, int col, bool *isnull)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &null);

	if (isnull)
		*isnull = null;
	if (null)
		return NULL;
	return TextDatumGetCString(d);
}

static char *
spi_name(int row, int col)
{
	bool		null;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &null);

	return null ? NULL : pstrdup(NameStr(*DatumGetName(d)));
}

/*
 * Load sync_map map_id into map, allocated in the current memory context.
 * Returns false when the map (or one of its relations) is missing and
 * missing_ok.
 */
bool
cu_map_load(int64 map_id, CuMap *map, bool missing_ok)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext old;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(map_id)};
	int			rc;
	bool		isnull;
	uint64		i;

	memset(map, 0, sizeof(*map));
	rc = SPI_execute_with_args(
							   "SELECT m.migration_id, m.name, f.relid::pg_catalog.oid, t.relid::pg_catalog.oid, "
							   "m.from_key, m.to_key, m.mode OPERATOR(pg_catalog.=) 'final', "
							   "(SELECT s.relid::pg_catalog.oid FROM customer_unify.migration_relation s "
							   "  WHERE s.migration_id OPERATOR(pg_catalog.=) m.migration_id "
							   "    AND s.tag OPERATOR(pg_catalog.=) 'source'), "
							   "(SELECT g.name FROM customer_unify.migration g WHERE g.id OPERATOR(pg_catalog.=) m.migration_id) "
							   "FROM customer_unify.sync_map m "
							   "JOIN customer_unify.migration_relation f ON f.migration_id OPERATOR(pg_catalog.=) m.migration_id "
							   " AND f.tag OPERATOR(pg_catalog.=) m.from_tag "
							   "JOIN customer_unify.migration_relation t ON t.migration_id OPERATOR(pg_catalog.=) m.migration_id "
							   " AND t.tag OPERATOR(pg_catalog.=) m.to_tag "
							   "WHERE m.id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading sync_map %lld failed: %s", (long long) map_id,
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("customer_unify: sync map %lld does not exist, or its relations are not registered",
						(long long) map_id),
				 errhint("A trigger of a migration that was removed from the catalog; drop the trigger.")));
	}
	old = MemoryContextSwitchTo(cxt);
	map->id = map_id;
	map->migration_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	map->name = spi_text(0, 2, NULL);
	map->from_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	map->to_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	map->from_key = spi_name(0, 5);
	map->to_key = spi_name(0, 6);
	map->final = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
	map->source_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull));
	if (isnull)
		map->source_relid = InvalidOid;
	map->migration_name = spi_text(0, 9, NULL);
	MemoryContextSwitchTo(old);
	if (get_rel_name(map->from_relid) == NULL || get_rel_name(map->to_relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("a table of migration \"%s\" does not exist any more", map->migration_name),
				 errdetail("It was dropped behind the DDL guard's back; the sync trigger of map \"%s\" has nothing to write to.",
						   map->name),
				 errhint("Roll the migration back: SELECT customer_unify.rollback(%s);",
						 quote_literal_cstr(map->migration_name))));

	rc = SPI_execute_with_args("SELECT c.from_column, c.to_column FROM customer_unify.sync_map_column c "
							   "WHERE c.map_id OPERATOR(pg_catalog.=) $1 ORDER BY c.ord",
							   1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading sync_map_column failed: %s", SPI_result_code_string(rc));
	old = MemoryContextSwitchTo(cxt);
	map->ncols = (int) SPI_processed;
	map->from_columns = palloc0(sizeof(char *) * Max(1, map->ncols));
	map->to_columns = palloc0(sizeof(char *) * Max(1, map->ncols));
	for (i = 0; i < SPI_processed; i++)
	{
		map->from_columns[i] = spi_name(i, 1);
		map->to_columns[i] = spi_name(i, 2);
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* Run one statement on the catalog as the extension's owner. */
void
cu_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls, int expected)
{
	int			rc = cu_spi_as(cu_extension_owner(), false, sql, NULL, nargs, types, values, nulls,
							   false, 0);

	if (rc != expected)
		elog(ERROR, "customer_unify: catalog statement failed (%s): %s", SPI_result_code_string(rc), sql);
	/* later read-only queries of the caller must see the write */
	CommandCounterIncrement();
}

Oid
cu_relation_by_tag(int64 migration_id, const char *tag, bool missing_ok)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(migration_id), CStringGetTextDatum(tag)};
	int			rc;
	bool		isnull;

	rc = SPI_execute_with_args("SELECT r.relid::pg_catalog.oid FROM customer_unify.migration_relation r "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.tag OPERATOR(pg_catalog.=) $2",
							   2, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading migration_relation failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return InvalidOid;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration %lld has no relation \"%s\"", (long long) migration_id, tag)));
	}
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}
