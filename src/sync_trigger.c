/*-------------------------------------------------------------------------
 * sync_trigger.c
 *	  The split's C sync triggers: while a migration is live, writes to the
 *	  source's moved columns are mirrored into the target
 *	  (split_sync_source) and writes to the target back into the source
 *	  (split_sync_target).  Statements are prepared once per trigger and
 *	  kept; mirrored writes run under the sync loop guard so the other
 *	  side's trigger (WHEN NOT _sync_guard_active()) is not even queued.
 *
 *	  Trigger arguments (both directions):
 *	    0 migration id, 1 other schema, 2 other table,
 *	    3 key column on this side, 4 key column on the other side,
 *	    5.. moved column names.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define SYNC_FIXED_ARGS 5

typedef struct SplitSync
{
	int64		migration_id;
	int			ncols;
	AttrNumber	key_attnum;		/* key on the trigger's table */
	AttrNumber *attnums;		/* moved columns on the trigger's table */
	Oid		   *argtypes;		/* key type, then moved column types */
	char	   *this_name;		/* for messages */
	char	   *other_name;
	char	   *other_key;
	/* source side */
	SPIPlanPtr	upsert_target;
	SPIPlanPtr	delete_target;
	SPIPlanPtr	rekey_target;
	/* target side */
	SPIPlanPtr	update_source;
	SPIPlanPtr	source_exists;
} SplitSync;

static SplitSync *
split_sync_build(CuTriggerCacheEntry *entry, TriggerData *trigdata, bool source_side)
{
	Trigger    *trigger = trigdata->tg_trigger;
	Relation	rel = trigdata->tg_relation;
	char	  **args = trigger->tgargs;
	SplitSync  *sync;
	MemoryContext old;
	StringInfoData sql;
	const char *other;
	int			i;

	if (trigger->tgnargs <= SYNC_FIXED_ARGS)
		elog(ERROR, "customer_unify: trigger \"%s\" has %d arguments, expected more than %d",
			 trigger->tgname, trigger->tgnargs, SYNC_FIXED_ARGS);

	cu_trigger_cache_reset(entry);
	old = MemoryContextSwitchTo(entry->cxt);

	sync = palloc0(sizeof(SplitSync));
	sync->migration_id = pg_strtoint64(args[0]);
	sync->ncols = trigger->tgnargs - SYNC_FIXED_ARGS;
	sync->key_attnum = cu_attnum_or_error(rel, args[3]);
	sync->attnums = palloc(sizeof(AttrNumber) * sync->ncols);
	sync->argtypes = palloc(sizeof(Oid) * (sync->ncols + 1));
	sync->argtypes[0] = TupleDescAttr(RelationGetDescr(rel), sync->key_attnum - 1)->atttypid;
	for (i = 0; i < sync->ncols; i++)
	{
		sync->attnums[i] = cu_attnum_or_error(rel, args[SYNC_FIXED_ARGS + i]);
		sync->argtypes[i + 1] = TupleDescAttr(RelationGetDescr(rel), sync->attnums[i] - 1)->atttypid;
	}
	sync->this_name = pstrdup(RelationGetRelationName(rel));
	sync->other_name = pstrdup(args[2]);
	sync->other_key = pstrdup(args[4]);
	(void) cu_relid_or_error(args[1], args[2]);
	other = cu_qualified_name(args[1], args[2]);
	MemoryContextSwitchTo(old);

	initStringInfo(&sql);
	if (source_side)
	{
		/* INSERT ... ON CONFLICT (link) DO UPDATE: correct whether or not the backfill got there first */
		appendStringInfo(&sql, "INSERT INTO %s AS t (%s", other, quote_identifier(args[4]));
		for (i = 0; i < sync->ncols; i++)
			appendStringInfo(&sql, ", %s", quote_identifier(args[SYNC_FIXED_ARGS + i]));
		appendStringInfoString(&sql, ") VALUES ($1");
		for (i = 0; i < sync->ncols; i++)
			appendStringInfo(&sql, ", $%d", i + 2);
		appendStringInfo(&sql, ") ON CONFLICT (%s) DO UPDATE SET ", quote_identifier(args[4]));
		for (i = 0; i < sync->ncols; i++)
		{
			const char *c = quote_identifier(args[SYNC_FIXED_ARGS + i]);

			appendStringInfo(&sql, "%s%s = EXCLUDED.%s", i ? ", " : "", c, c);
		}
		sync->upsert_target = cu_prepare_kept(entry, sql.data, sync->ncols + 1, sync->argtypes);

		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s = $1", other, quote_identifier(args[4]));
		sync->delete_target = cu_prepare_kept(entry, sql.data, 1, sync->argtypes);

		resetStringInfo(&sql);
		{
			Oid			rekey_types[2] = {sync->argtypes[0], sync->argtypes[0]};

			appendStringInfo(&sql, "UPDATE ONLY %s SET %s = $2 WHERE %s = $1", other,
							 quote_identifier(args[4]), quote_identifier(args[4]));
			sync->rekey_target = cu_prepare_kept(entry, sql.data, 2, rekey_types);
		}
	}
	else
	{
		appendStringInfo(&sql, "UPDATE ONLY %s SET ", other);
		for (i = 0; i < sync->ncols; i++)
			appendStringInfo(&sql, "%s%s = $%d", i ? ", " : "",
							 quote_identifier(args[SYNC_FIXED_ARGS + i]), i + 2);
		appendStringInfo(&sql, " WHERE %s = $1", quote_identifier(args[4]));
		sync->update_source = cu_prepare_kept(entry, sql.data, sync->ncols + 1, sync->argtypes);

		resetStringInfo(&sql);
		appendStringInfo(&sql, "SELECT 1 FROM ONLY %s WHERE %s = $1", other, quote_identifier(args[4]));
		sync->source_exists = cu_prepare_kept(entry, sql.data, 1, sync->argtypes);
	}
	pfree(sql.data);

	entry->data = sync;
	entry->valid = true;
	return sync;
}

static SplitSync *
split_sync_get(TriggerData *trigdata, bool source_side)
{
	CuTriggerCacheEntry *entry = cu_trigger_cache_lookup(trigdata->tg_trigger->tgoid);

	if (entry->valid)
		return (SplitSync *) entry->data;
	{
		void	   *built;

		/* prepared statements need an SPI connection; the kept plans outlive it */
		SPI_connect();
		built = split_sync_build(entry, trigdata, source_side);
		SPI_finish();
		return built;
	}
}

/* Fill values[0] = key, values[1..] = moved columns from a row of the trigger's table. */
static void
split_sync_values(SplitSync *sync, HeapTuple tuple, TupleDesc desc, Datum *values, char *nulls)
{
	bool		isnull;
	int			i;

	values[0] = heap_getattr(tuple, sync->key_attnum, desc, &isnull);
	nulls[0] = isnull ? 'n' : ' ';
	for (i = 0; i < sync->ncols; i++)
	{
		values[i + 1] = heap_getattr(tuple, sync->attnums[i], desc, &isnull);
		nulls[i + 1] = isnull ? 'n' : ' ';
	}
}

static bool
split_sync_same(Datum a, char anull, Datum b, char bnull, Form_pg_attribute att)
{
	if (anull == 'n' || bnull == 'n')
		return anull == bnull;
	return datumIsEqual(a, b, att->attbyval, att->attlen);
}

/* Did any moved column change?  (A binary difference is enough to mirror.) */
static bool
split_sync_changed(SplitSync *sync, TupleDesc desc, Datum *oldv, char *oldn, Datum *newv, char *newn)
{
	int			i;

	for (i = 0; i < sync->ncols; i++)
		if (!split_sync_same(oldv[i + 1], oldn[i + 1], newv[i + 1], newn[i + 1],
							 TupleDescAttr(desc, sync->attnums[i] - 1)))
			return true;
	return false;
}

/* Run fn under the loop guard and an SPI connection. */
#define CU_GUARDED(...) \
	do { \
		SPI_connect(); \
		cu_sync_guard_depth++; \
		PG_TRY(); \
		{ \
			__VA_ARGS__; \
		} \
		PG_FINALLY(); \
		{ \
			cu_sync_guard_depth--; \
		} \
		PG_END_TRY(); \
		SPI_finish(); \
	} while (0)

PG_FUNCTION_INFO_V1(cu_split_sync_source);

Datum
cu_split_sync_source(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	SplitSync  *sync;
	Datum	   *oldv,
			   *newv;
	char	   *oldn,
			   *newn;

	cu_check_trigger_call(fcinfo, "split_sync_source", false);
	if (cu_sync_guard_depth > 0)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	sync = split_sync_get(trigdata, true);
	oldv = palloc(sizeof(Datum) * (sync->ncols + 1));
	newv = palloc(sizeof(Datum) * (sync->ncols + 1));
	oldn = palloc(sync->ncols + 2);
	newn = palloc(sync->ncols + 2);
	oldn[sync->ncols + 1] = newn[sync->ncols + 1] = '\0';

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		split_sync_values(sync, trigdata->tg_trigtuple, desc, newv, newn);
		CU_GUARDED(cu_spi_exec_plan(sync->upsert_target, newv, newn, SPI_OK_INSERT, "mirroring an insert"));
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		rekey;

		split_sync_values(sync, trigdata->tg_trigtuple, desc, oldv, oldn);
		split_sync_values(sync, trigdata->tg_newtuple, desc, newv, newn);
		rekey = !split_sync_same(oldv[0], oldn[0], newv[0], newn[0],
								 TupleDescAttr(desc, sync->key_attnum - 1));
		if (rekey || split_sync_changed(sync, desc, oldv, oldn, newv, newn))
		{
			if (rekey)
				cu_advisory_xact_lock(sync->migration_id, false);
			CU_GUARDED(
				{
					if (rekey)
					{
						Datum		kv[2] = {oldv[0], newv[0]};
						char		kn[3] = {' ', ' ', '\0'};

						cu_spi_exec_plan(sync->rekey_target, kv, kn, SPI_OK_UPDATE, "mirroring a key change");
					}
					cu_spi_exec_plan(sync->upsert_target, newv, newn, SPI_OK_INSERT, "mirroring an update");
				});
		}
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		split_sync_values(sync, trigdata->tg_trigtuple, desc, oldv, oldn);
		/* a backfill batch in flight must not copy the row this delete removes */
		cu_advisory_xact_lock(sync->migration_id, false);
		CU_GUARDED(cu_spi_exec_plan(sync->delete_target, oldv, oldn, SPI_OK_DELETE, "mirroring a delete"));
	}
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_split_sync_target);

Datum
cu_split_sync_target(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	SplitSync  *sync;
	Datum	   *oldv,
			   *newv;
	char	   *oldn,
			   *newn;

	cu_check_trigger_call(fcinfo, "split_sync_target", false);
	if (cu_sync_guard_depth > 0)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	sync = split_sync_get(trigdata, false);
	oldv = palloc(sizeof(Datum) * (sync->ncols + 1));
	newv = palloc(sizeof(Datum) * (sync->ncols + 1));
	oldn = palloc(sync->ncols + 2);
	newn = palloc(sync->ncols + 2);
	oldn[sync->ncols + 1] = newn[sync->ncols + 1] = '\0';

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		HeapTuple	newtuple = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;

		split_sync_values(sync, newtuple, desc, newv, newn);
		if (!is_insert)
		{
			split_sync_values(sync, trigdata->tg_trigtuple, desc, oldv, oldn);
			if (!split_sync_same(oldv[0], oldn[0], newv[0], newn[0],
								 TupleDescAttr(desc, sync->key_attnum - 1)))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the link column of \"%s\" while migration %lld is live",
								sync->this_name, (long long) sync->migration_id),
						 errdetail("\"%s\" is kept 1:1 with \"%s\" until the migration is finalized.",
								   sync->this_name, sync->other_name),
						 errhint("Change the key in \"%s\"; the change is mirrored.", sync->other_name)));
			if (!split_sync_changed(sync, desc, oldv, oldn, newv, newn))
				return PointerGetDatum(NULL);
		}
		CU_GUARDED(
			{
				cu_spi_exec_plan(sync->update_source, newv, newn, SPI_OK_UPDATE,
								 "mirroring into the source");
				if (SPI_processed == 0)
					ereport(ERROR,
							(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
							 errmsg("no row in \"%s\" with %s = %s for the new row of \"%s\"",
									sync->other_name, quote_identifier(sync->other_key),
									newn[0] == 'n' ? "NULL" :
									cu_datum_text(sync->argtypes[0], newv[0]),
									sync->this_name),
							 errdetail("While migration %lld is live, every row of \"%s\" belongs to a row of \"%s\".",
									   (long long) sync->migration_id, sync->this_name, sync->other_name),
							 errhint("Insert the row into \"%s\" first (or through the compatibility view).",
									 sync->other_name)));
			});
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		split_sync_values(sync, trigdata->tg_trigtuple, desc, oldv, oldn);
		CU_GUARDED(
			{
				cu_spi_exec_plan(sync->source_exists, oldv, oldn, SPI_OK_SELECT, "checking the source row");
				if (SPI_processed > 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot delete from \"%s\" while \"%s\" still has the row",
									sync->this_name, sync->other_name),
							 errdetail("Migration %lld keeps \"%s\" 1:1 with \"%s\" until it is finalized.",
									   (long long) sync->migration_id, sync->this_name, sync->other_name),
							 errhint("Delete the row from \"%s\"; the delete is mirrored.", sync->other_name)));
			});
	}
	return PointerGetDatum(NULL);
}
