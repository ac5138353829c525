/*-------------------------------------------------------------------------
 * sync_trigger.c
 *	  The split's C sync triggers: while a migration is live, writes to the
 *	  source's moved columns are mirrored into the target
 *	  (split_sync_source, with split_sync_flush) and writes to the target
 *	  back into the source (split_sync_target).  Statements are prepared
 *	  once per trigger and kept; mirrored writes run under the sync loop
 *	  guard, so the other side's trigger (WHEN NOT _sync_guard_active()) is
 *	  not even queued.
 *
 *	  Source-side writes are not mirrored one statement per row: the row
 *	  trigger appends the key to a pending run (one kind of write for one
 *	  trigger), and the run is written when the statement-level trigger
 *	  fires, when it reaches MIRROR_BATCH_ROWS keys, or before a write of
 *	  another kind.  AFTER ROW triggers fire at the end of the statement
 *	  anyway, so the target sees the writes at the same point of the
 *	  transaction.  A run of one row (the usual OLTP statement) is written
 *	  with that row's values by one single-table statement.  A longer run,
 *	  or a row whose version a later write of the transaction has already
 *	  replaced (an AFTER ROW trigger fires after every trigger sorting
 *	  before it, and one of those may have written the row again), is
 *	  written by one array-parameter statement that reads the rows back by
 *	  key (INSERT ... SELECT ... WHERE key = ANY ($1), ON CONFLICT DO UPDATE
 *	  before the link FK exists, a plain UPDATE ... FROM after it, DELETE
 *	  ... = ANY ($1)), so the last write wins whatever the trigger order.
 *	  Once the link FK exists its cascades carry deletes and key changes.
 *	  Subtransaction aborts take their keys out of the run; a run still
 *	  pending at commit is an error, never a silent loss.
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
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define SYNC_FIXED_ARGS 5
#define MIRROR_BATCH_ROWS 10000

typedef struct SplitSync
{
	int64		migration_id;
	int			ncols;
	AttrNumber	key_attnum;		/* key on the trigger's table */
	AttrNumber *attnums;		/* moved columns on the trigger's table */
	Oid			keytype;
	int16		keylen;
	bool		keybyval;
	char		keyalign;
	char	   *this_name;		/* for messages */
	char	   *other_name;
	char	   *other_key;
	/* source side */
	bool		batchable;		/* the key type has an array type */
	bool		linked;			/* the link FK exists: the backfill is done and
								 * the FK cascades deletes and key changes */
	SPIPlanPtr	upsert_one;		/* copy one source row into the target */
	SPIPlanPtr	insert_many;	/* new source rows: ... = ANY ($1), no conflict possible */
	SPIPlanPtr	upsert_many;	/* ... = ANY ($1) */
	SPIPlanPtr	update_many;	/* once linked: a plain UPDATE ... FROM */
	/* a statement that wrote one row: its values, no re-read of the source */
	Oid		   *valtypes;		/* key type, then the moved columns' types */
	SPIPlanPtr	insert_values;
	SPIPlanPtr	upsert_values;
	SPIPlanPtr	update_values;
	SPIPlanPtr	delete_one;
	SPIPlanPtr	delete_many;
	SPIPlanPtr	rekey;
	/* target side */
	SPIPlanPtr	update_source;	/* copy one target row back into the source */
	SPIPlanPtr	source_exists;
} SplitSync;

static SPIPlanPtr
split_sync_prepare_key(CuTriggerCacheEntry *entry, SplitSync *sync, const char *sql, bool array)
{
	Oid			type = array ? get_array_type(sync->keytype) : sync->keytype;

	return cu_prepare_kept(entry, sql, 1, &type);
}

static SplitSync *
split_sync_build(CuTriggerCacheEntry *entry, TriggerData *trigdata, bool source_side)
{
	Trigger    *trigger = trigdata->tg_trigger;
	Relation	rel = trigdata->tg_relation;
	char	  **args = trigger->tgargs;
	SplitSync  *sync;
	MemoryContext old;
	StringInfoData sql,
				cols,
				scols,
				sets;
	const char *other;
	const char *self;
	const char *key = quote_identifier(args[3]);
	const char *otherkey = quote_identifier(args[4]);
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
	for (i = 0; i < sync->ncols; i++)
		sync->attnums[i] = cu_attnum_or_error(rel, args[SYNC_FIXED_ARGS + i]);
	sync->keytype = TupleDescAttr(RelationGetDescr(rel), sync->key_attnum - 1)->atttypid;
	get_typlenbyvalalign(sync->keytype, &sync->keylen, &sync->keybyval, &sync->keyalign);
	sync->this_name = pstrdup(RelationGetRelationName(rel));
	sync->other_name = pstrdup(args[2]);
	sync->other_key = pstrdup(args[4]);
	MemoryContextSwitchTo(old);

	(void) cu_relid_or_error(args[1], args[2]);
	other = cu_qualified_name(args[1], args[2]);
	self = cu_qualified_name(get_namespace_name(RelationGetNamespace(rel)), RelationGetRelationName(rel));

	initStringInfo(&sql);
	initStringInfo(&cols);
	initStringInfo(&scols);
	initStringInfo(&sets);
	for (i = 0; i < sync->ncols; i++)
	{
		const char *c = quote_identifier(args[SYNC_FIXED_ARGS + i]);

		appendStringInfo(&cols, ", %s", c);
		appendStringInfo(&scols, ", s.%s", c);
		appendStringInfo(&sets, "%s%s = EXCLUDED.%s", i ? ", " : "", c, c);
	}

	if (source_side)
	{
		/* INSERT ... ON CONFLICT (link) DO UPDATE: right whether or not the backfill got there first */
		appendStringInfo(&sql,
						 "INSERT INTO %s AS t (%s%s) SELECT s.%s%s FROM ONLY %s s "
						 "WHERE s.%s OPERATOR(pg_catalog.=) $1 ON CONFLICT (%s) DO UPDATE SET %s",
						 other, otherkey, cols.data, key, scols.data, self, key, otherkey, sets.data);
		sync->upsert_one = split_sync_prepare_key(entry, sync, sql.data, false);

		sync->valtypes = MemoryContextAlloc(entry->cxt, sizeof(Oid) * (sync->ncols + 1));
		sync->valtypes[0] = sync->keytype;
		for (i = 0; i < sync->ncols; i++)
			sync->valtypes[i + 1] = TupleDescAttr(RelationGetDescr(rel), sync->attnums[i] - 1)->atttypid;
		{
			StringInfoData vals,
						assign;

			initStringInfo(&vals);
			initStringInfo(&assign);
			for (i = 0; i < sync->ncols; i++)
			{
				appendStringInfo(&vals, ", $%d", i + 2);
				appendStringInfo(&assign, "%s%s = $%d", i ? ", " : "",
								 quote_identifier(args[SYNC_FIXED_ARGS + i]), i + 2);
			}
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO %s (%s%s) VALUES ($1%s)", other, otherkey, cols.data, vals.data);
			sync->insert_values = cu_prepare_kept(entry, sql.data, sync->ncols + 1, sync->valtypes);
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO %s AS t (%s%s) VALUES ($1%s) ON CONFLICT (%s) DO UPDATE SET %s",
							 other, otherkey, cols.data, vals.data, otherkey, sets.data);
			sync->upsert_values = cu_prepare_kept(entry, sql.data, sync->ncols + 1, sync->valtypes);
			resetStringInfo(&sql);
			appendStringInfo(&sql, "UPDATE ONLY %s SET %s WHERE %s OPERATOR(pg_catalog.=) $1",
							 other, assign.data, otherkey);
			sync->update_values = cu_prepare_kept(entry, sql.data, sync->ncols + 1, sync->valtypes);
		}

		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s OPERATOR(pg_catalog.=) $1", other, otherkey);
		sync->delete_one = split_sync_prepare_key(entry, sync, sql.data, false);

		/*
		 * The link foreign key is added once the backfill is done: from then
		 * on every source row has its target row, and ON DELETE / ON UPDATE
		 * CASCADE carry deletes and key changes.
		 */
		{
			Oid			types[2] = {OIDOID, OIDOID};
			Datum		vals[2] = {ObjectIdGetDatum(cu_relid_or_error(args[1], args[2])),
			ObjectIdGetDatum(RelationGetRelid(rel))};
			int			rc = SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_constraint c "
												   "WHERE c.conrelid OPERATOR(pg_catalog.=) $1 "
												   "AND c.confrelid OPERATOR(pg_catalog.=) $2 "
												   "AND c.contype OPERATOR(pg_catalog.=) 'f' "
												   "AND c.confdeltype OPERATOR(pg_catalog.=) 'c' "
												   "AND c.confupdtype OPERATOR(pg_catalog.=) 'c'",
												   2, types, vals, NULL, true, 1);

			if (rc != SPI_OK_SELECT)
				elog(ERROR, "customer_unify: looking up the link foreign key failed");
			sync->linked = SPI_processed > 0;
		}

		sync->batchable = OidIsValid(get_array_type(sync->keytype));
		if (sync->batchable)
		{
			resetStringInfo(&sql);
			appendStringInfo(&sql,
							 "INSERT INTO %s AS t (%s%s) SELECT s.%s%s FROM ONLY %s s "
							 "WHERE s.%s OPERATOR(pg_catalog.=) ANY ($1) ON CONFLICT (%s) DO UPDATE SET %s",
							 other, otherkey, cols.data, key, scols.data, self, key, otherkey, sets.data);
			sync->upsert_many = split_sync_prepare_key(entry, sync, sql.data, true);

			/*
			 * Rows new in the source cannot have a target row yet: the target
			 * trigger refuses rows without a source row, deletes and key
			 * changes are written before later inserts, and the backfill only
			 * sees a source row once the transaction that inserted it (and
			 * mirrored it) has committed.  A plain INSERT skips the
			 * speculative insertion ON CONFLICT needs, half the cost.
			 */
			resetStringInfo(&sql);
			appendStringInfo(&sql,
							 "INSERT INTO %s (%s%s) SELECT s.%s%s FROM ONLY %s s "
							 "WHERE s.%s OPERATOR(pg_catalog.=) ANY ($1)",
							 other, otherkey, cols.data, key, scols.data, self, key);
			sync->insert_many = split_sync_prepare_key(entry, sync, sql.data, true);

			resetStringInfo(&sql);
			appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1)",
							 other, otherkey);
			sync->delete_many = split_sync_prepare_key(entry, sync, sql.data, true);

			resetStringInfo(&sql);
			appendStringInfo(&sql, "UPDATE ONLY %s AS t SET ", other);
			for (i = 0; i < sync->ncols; i++)
			{
				const char *c = quote_identifier(args[SYNC_FIXED_ARGS + i]);

				appendStringInfo(&sql, "%s%s = s.%s", i ? ", " : "", c, c);
			}
			appendStringInfo(&sql, " FROM ONLY %s s WHERE s.%s OPERATOR(pg_catalog.=) ANY ($1) "
							 "AND t.%s OPERATOR(pg_catalog.=) s.%s", self, key, otherkey, key);
			sync->update_many = split_sync_prepare_key(entry, sync, sql.data, true);
		}

		resetStringInfo(&sql);
		{
			Oid			types[2] = {sync->keytype, sync->keytype};

			appendStringInfo(&sql, "UPDATE ONLY %s SET %s = $2 WHERE %s OPERATOR(pg_catalog.=) $1",
							 other, otherkey, otherkey);
			sync->rekey = cu_prepare_kept(entry, sql.data, 2, types);
		}
	}
	else
	{
		appendStringInfo(&sql, "UPDATE ONLY %s AS s SET ", other);
		for (i = 0; i < sync->ncols; i++)
		{
			const char *c = quote_identifier(args[SYNC_FIXED_ARGS + i]);

			appendStringInfo(&sql, "%s%s = t.%s", i ? ", " : "", c, c);
		}
		appendStringInfo(&sql, " FROM ONLY %s t WHERE t.%s OPERATOR(pg_catalog.=) $1 AND s.%s OPERATOR(pg_catalog.=) $1",
						 self, key, otherkey);
		sync->update_source = split_sync_prepare_key(entry, sync, sql.data, false);

		resetStringInfo(&sql);
		appendStringInfo(&sql, "SELECT 1 FROM ONLY %s WHERE %s OPERATOR(pg_catalog.=) $1", other, otherkey);
		sync->source_exists = split_sync_prepare_key(entry, sync, sql.data, false);
	}

	entry->data = sync;
	entry->valid = true;
	return sync;
}

/*
 * The pending run of source keys (see the header comment).
 */
typedef enum MirrorKind
{
	MIRROR_NONE,
	MIRROR_INSERT,
	MIRROR_UPSERT,
	MIRROR_UPDATE,
	MIRROR_DELETE
} MirrorKind;

typedef struct MirrorRun
{
	CuTriggerCacheEntry *entry; /* whose plans (kept until the run is written) */
	SplitSync  *sync;
	MirrorKind	kind;
	int			n;
	int			cap;
	Datum	   *keys;
	SubTransactionId *subids;
	bool		has_values;		/* the first row's values, see mirror_append */
	Datum	   *values;
	char	   *vnulls;
	MemoryContext cxt;
} MirrorRun;

static MirrorRun mirror_run;

/* one spare memory context per transaction, so a run does not create one */
static MemoryContext mirror_spare_cxt = NULL;

static MemoryContext
mirror_get_cxt(void)
{
	MemoryContext cxt = mirror_spare_cxt;

	if (cxt != NULL)
	{
		mirror_spare_cxt = NULL;
		return cxt;
	}
	return AllocSetContextCreate(TopTransactionContext, "customer_unify mirror run",
								 ALLOCSET_SMALL_SIZES);
}

static void
mirror_release_cxt(MemoryContext cxt)
{
	if (mirror_spare_cxt == NULL)
	{
		MemoryContextReset(cxt);
		mirror_spare_cxt = cxt;
	}
	else
		MemoryContextDelete(cxt);
}

/*
 * Is this row version still the latest?  Not when a later statement of the
 * transaction updated or deleted it before this AFTER trigger fired; then the
 * mirror must read the row back instead of using these values.
 */
static bool
split_sync_tuple_is_latest(HeapTuple tuple)
{
	HeapTupleHeader h = tuple->t_data;

	if (h->t_infomask & HEAP_XMAX_INVALID)
		return true;
	if (!TransactionIdIsValid(HeapTupleHeaderGetRawXmax(h)))
		return true;
	return HEAP_XMAX_IS_LOCKED_ONLY(h->t_infomask);
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

/* Write the pending run with one statement, then forget it. */
static void
mirror_flush(void)
{
	MirrorRun	run = mirror_run;

	if (run.kind == MIRROR_NONE)
		return;
	/* detach first: the write may fire triggers that start a new run */
	memset(&mirror_run, 0, sizeof(mirror_run));

	PG_TRY();
	{
		if (run.n == 1 && run.has_values)
		{
			/* one row: one single-table statement with its values */
			CU_GUARDED(
				{
					if (run.kind == MIRROR_INSERT)
						cu_spi_exec_plan(run.sync->insert_values, run.values, run.vnulls, SPI_OK_INSERT,
										 "mirroring an insert");
					else if (run.kind == MIRROR_UPSERT)
						cu_spi_exec_plan(run.sync->upsert_values, run.values, run.vnulls, SPI_OK_INSERT,
										 "mirroring an update");
					else
						cu_spi_exec_plan(run.sync->update_values, run.values, run.vnulls, SPI_OK_UPDATE,
										 "mirroring an update");
				});
		}
		else if (run.n > 0)
		{
			MemoryContext old = MemoryContextSwitchTo(run.cxt);
			int			dims[1] = {run.n};
			int			lbs[1] = {1};
			Datum		param;
			char		pnull[2] = {' ', '\0'};

			param = PointerGetDatum(construct_md_array(run.keys, NULL, 1, dims, lbs, run.sync->keytype,
													   run.sync->keylen, run.sync->keybyval,
													   run.sync->keyalign));
			MemoryContextSwitchTo(old);
			CU_GUARDED(
				{
					if (run.kind == MIRROR_INSERT)
						cu_spi_exec_plan(run.sync->insert_many, &param, pnull, SPI_OK_INSERT,
										 "mirroring inserts");
					else if (run.kind == MIRROR_UPSERT)
						cu_spi_exec_plan(run.sync->upsert_many, &param, pnull, SPI_OK_INSERT,
										 "mirroring updates");
					else if (run.kind == MIRROR_UPDATE)
						cu_spi_exec_plan(run.sync->update_many, &param, pnull, SPI_OK_UPDATE,
										 "mirroring updates");
					else
						cu_spi_exec_plan(run.sync->delete_many, &param, pnull, SPI_OK_DELETE,
										 "mirroring deletes");
				});
		}
	}
	PG_FINALLY();
	{
		mirror_release_cxt(run.cxt);
	}
	PG_END_TRY();
}

/* Add one key to the pending run (writing the run first if it is of another kind). */
static void
mirror_append(CuTriggerCacheEntry *entry, SplitSync *sync, MirrorKind kind, Datum key,
			  HeapTuple tuple, TupleDesc desc)
{
	MemoryContext old;

	if (mirror_run.kind != MIRROR_NONE && (mirror_run.entry != entry || mirror_run.kind != kind))
		mirror_flush();
	if (mirror_run.kind == MIRROR_NONE)
	{
		mirror_run.cxt = mirror_get_cxt();
		mirror_run.entry = entry;
		mirror_run.sync = sync;
		mirror_run.kind = kind;
	}

	old = MemoryContextSwitchTo(mirror_run.cxt);

	/*
	 * Keep the first row's values: a statement that writes one row (the
	 * usual OLTP case) is then mirrored by one single-table statement, with
	 * no re-read of the source.  Only if the row version is still the
	 * latest; otherwise, and for runs of several rows, the rows are read
	 * back by key.
	 */
	if (mirror_run.n == 0 && tuple != NULL && split_sync_tuple_is_latest(tuple))
	{
		int			i;
		bool		isnull;

		mirror_run.values = palloc(sizeof(Datum) * (sync->ncols + 1));
		mirror_run.vnulls = palloc(sync->ncols + 2);
		mirror_run.values[0] = (Datum) 0;	/* the key, set below */
		mirror_run.vnulls[0] = ' ';
		for (i = 0; i < sync->ncols; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, sync->attnums[i] - 1);
			Datum		v = heap_getattr(tuple, sync->attnums[i], desc, &isnull);

			mirror_run.vnulls[i + 1] = isnull ? 'n' : ' ';
			mirror_run.values[i + 1] = isnull ? (Datum) 0
				: att->attlen == -1 ? PointerGetDatum(PG_DETOAST_DATUM_COPY(v))
				: datumCopy(v, att->attbyval, att->attlen);
		}
		mirror_run.vnulls[sync->ncols + 1] = '\0';
		mirror_run.has_values = true;
	}

	if (mirror_run.n == mirror_run.cap)
	{
		mirror_run.cap = mirror_run.cap ? mirror_run.cap * 2 : 16;
		if (mirror_run.keys == NULL)
		{
			mirror_run.keys = palloc(sizeof(Datum) * mirror_run.cap);
			mirror_run.subids = palloc(sizeof(SubTransactionId) * mirror_run.cap);
		}
		else
		{
			mirror_run.keys = repalloc(mirror_run.keys, sizeof(Datum) * mirror_run.cap);
			mirror_run.subids = repalloc(mirror_run.subids, sizeof(SubTransactionId) * mirror_run.cap);
		}
	}
	if (sync->keylen == -1)
		mirror_run.keys[mirror_run.n] = PointerGetDatum(PG_DETOAST_DATUM_COPY(key));
	else
		mirror_run.keys[mirror_run.n] = datumCopy(key, sync->keybyval, sync->keylen);
	if (mirror_run.n == 0 && mirror_run.has_values)
		mirror_run.values[0] = mirror_run.keys[0];
	mirror_run.subids[mirror_run.n] = GetCurrentSubTransactionId();
	mirror_run.n++;
	MemoryContextSwitchTo(old);

	if (mirror_run.n >= MIRROR_BATCH_ROWS)
		mirror_flush();
}

static void
mirror_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (mirror_run.kind != MIRROR_NONE && mirror_run.n > 0)
			{
				int			n = mirror_run.n;

				memset(&mirror_run, 0, sizeof(mirror_run));
				mirror_spare_cxt = NULL;
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("customer_unify: %d mirrored rows were never written to the target", n),
						 errdetail("The statement-level trigger customer_unify_sync_flush did not fire; the transaction is rolled back so that nothing is lost."),
						 errhint("Do not disable the customer_unify triggers while a migration is live.")));
			}
			break;
		default:
			/* the run's memory belongs to the transaction */
			memset(&mirror_run, 0, sizeof(mirror_run));
			mirror_spare_cxt = NULL;
			break;
	}
}

static void
mirror_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (mirror_run.kind == MIRROR_NONE)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* keys of the aborted subtransaction are the tail of the run */
		while (mirror_run.n > 0 && mirror_run.subids[mirror_run.n - 1] == mySubid)
			mirror_run.n--;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < mirror_run.n; i++)
			if (mirror_run.subids[i] == mySubid)
				mirror_run.subids[i] = parentSubid;
	}
}

void
cu_sync_trigger_init(void)
{
	RegisterXactCallback(mirror_xact_callback, NULL);
	RegisterSubXactCallback(mirror_subxact_callback, NULL);
}

static SplitSync *
split_sync_get(TriggerData *trigdata, bool source_side, CuTriggerCacheEntry **entryp)
{
	CuTriggerCacheEntry *entry = cu_trigger_cache_lookup(trigdata->tg_trigger->tgoid);
	void	   *built;

	*entryp = entry;
	if (entry->valid)
		return (SplitSync *) entry->data;
	/* a pending run still uses this entry's plans: write it before they are rebuilt */
	if (mirror_run.kind != MIRROR_NONE && mirror_run.entry == entry)
		mirror_flush();
	/* prepared statements need an SPI connection; the kept plans outlive it */
	SPI_connect();
	built = split_sync_build(entry, trigdata, source_side);
	SPI_finish();
	return built;
}

static Datum
split_sync_key(SplitSync *sync, HeapTuple tuple, TupleDesc desc, bool *isnull)
{
	return heap_getattr(tuple, sync->key_attnum, desc, isnull);
}

static bool
split_sync_same(Datum a, bool anull, Datum b, bool bnull, Form_pg_attribute att)
{
	if (anull || bnull)
		return anull == bnull;
	return datumIsEqual(a, b, att->attbyval, att->attlen);
}

/* Did any moved column change?  (A binary difference is enough to mirror.) */
static bool
split_sync_changed(SplitSync *sync, TupleDesc desc, HeapTuple oldtup, HeapTuple newtup)
{
	int			i;

	for (i = 0; i < sync->ncols; i++)
	{
		bool		on,
					nn;
		Datum		o = heap_getattr(oldtup, sync->attnums[i], desc, &on);
		Datum		n = heap_getattr(newtup, sync->attnums[i], desc, &nn);

		if (!split_sync_same(o, on, n, nn, TupleDescAttr(desc, sync->attnums[i] - 1)))
			return true;
	}
	return false;
}

static void
split_sync_write_one(SplitSync *sync, SPIPlanPtr plan, Datum key, int expected, const char *what)
{
	char		knull[2] = {' ', '\0'};

	CU_GUARDED(cu_spi_exec_plan(plan, &key, knull, expected, what));
}

PG_FUNCTION_INFO_V1(cu_split_sync_source);

Datum
cu_split_sync_source(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	SplitSync  *sync;
	CuTriggerCacheEntry *entry;
	Datum		key;
	bool		keynull;

	cu_check_trigger_call(fcinfo, "split_sync_source", false);
	if (cu_sync_guard_depth > 0)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	sync = split_sync_get(trigdata, true, &entry);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		key = split_sync_key(sync, trigdata->tg_trigtuple, desc, &keynull);
		if (sync->batchable)
			mirror_append(entry, sync, MIRROR_INSERT, key, trigdata->tg_trigtuple, desc);
		else
			split_sync_write_one(sync, sync->upsert_one, key, SPI_OK_INSERT, "mirroring an insert");
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		newnull;
		Datum		oldkey = split_sync_key(sync, trigdata->tg_trigtuple, desc, &keynull);
		Datum		newkey = split_sync_key(sync, trigdata->tg_newtuple, desc, &newnull);

		bool		rekey = !split_sync_same(oldkey, keynull, newkey, newnull,
											 TupleDescAttr(desc, sync->key_attnum - 1));

		if (sync->linked && sync->batchable)
		{
			/* the FK's ON UPDATE CASCADE has moved the link; copy the values */
			if (rekey || split_sync_changed(sync, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
				mirror_append(entry, sync, MIRROR_UPDATE, newkey, trigdata->tg_newtuple, desc);
		}
		else if (rekey)
		{
			/* a key change is written at once, in order with the run before it */
			Datum		kv[2] = {oldkey, newkey};
			char		kn[3] = {' ', ' ', '\0'};

			mirror_flush();
			CU_GUARDED(
				{
					cu_spi_exec_plan(sync->rekey, kv, kn, SPI_OK_UPDATE, "mirroring a key change");
					cu_spi_exec_plan(sync->upsert_one, &newkey, kn + 1, SPI_OK_INSERT, "mirroring an update");
				});
		}
		else if (split_sync_changed(sync, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
		{
			if (sync->batchable)
				mirror_append(entry, sync, MIRROR_UPSERT, newkey, trigdata->tg_newtuple, desc);
			else
				split_sync_write_one(sync, sync->upsert_one, newkey, SPI_OK_INSERT, "mirroring an update");
		}
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (sync->linked)
			return PointerGetDatum(NULL);	/* ON DELETE CASCADE did it */
		key = split_sync_key(sync, trigdata->tg_trigtuple, desc, &keynull);
		if (sync->batchable)
			mirror_append(entry, sync, MIRROR_DELETE, key, NULL, NULL);
		else
			split_sync_write_one(sync, sync->delete_one, key, SPI_OK_DELETE, "mirroring a delete");
	}
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_split_sync_flush);

/* AFTER ... FOR EACH STATEMENT on the source: write the pending run. */
Datum
cu_split_sync_flush(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("split_sync_flush: must be fired AFTER ... FOR EACH STATEMENT")));
	mirror_flush();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_split_sync_target);

Datum
cu_split_sync_target(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	SplitSync  *sync;
	CuTriggerCacheEntry *entry;
	Datum		key;
	bool		keynull;
	char		knull[2] = {' ', '\0'};

	cu_check_trigger_call(fcinfo, "split_sync_target", false);
	if (cu_sync_guard_depth > 0)
		return PointerGetDatum(NULL);

	desc = RelationGetDescr(trigdata->tg_relation);
	sync = split_sync_get(trigdata, false, &entry);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		HeapTuple	newtuple = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;

		key = split_sync_key(sync, newtuple, desc, &keynull);
		if (keynull)
			return PointerGetDatum(NULL);	/* the NOT NULL constraint reports it */
		if (!is_insert)
		{
			bool		oldnull;
			Datum		oldkey = split_sync_key(sync, trigdata->tg_trigtuple, desc, &oldnull);

			if (!split_sync_same(oldkey, oldnull, key, keynull, TupleDescAttr(desc, sync->key_attnum - 1)))
			{
				bool		old_exists,
							new_exists;

				/* the link foreign key's ON UPDATE CASCADE following a key change of the source is fine */
				CU_GUARDED(
					{
						cu_spi_exec_plan(sync->source_exists, &oldkey, knull, SPI_OK_SELECT, "checking the source row");
						old_exists = SPI_processed > 0;
						cu_spi_exec_plan(sync->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
						new_exists = SPI_processed > 0;
					});
				if (!old_exists && new_exists)
					return PointerGetDatum(NULL);
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the link column of \"%s\" while migration %lld is live",
								sync->this_name, (long long) sync->migration_id),
						 errdetail("\"%s\" is kept 1:1 with \"%s\" until the migration is finalized.",
								   sync->this_name, sync->other_name),
						 errhint("Change the key in \"%s\"; the change is mirrored.", sync->other_name)));
			}
			if (!split_sync_changed(sync, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
				return PointerGetDatum(NULL);
		}
		CU_GUARDED(
			{
				cu_spi_exec_plan(sync->update_source, &key, knull, SPI_OK_UPDATE,
								 "mirroring into the source");
				if (SPI_processed == 0)
				{
					/* no source row, or the target row is already gone again */
					cu_spi_exec_plan(sync->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
					if (SPI_processed == 0)
						ereport(ERROR,
								(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
								 errmsg("no row in \"%s\" with %s = %s for the new row of \"%s\"",
										sync->other_name, quote_identifier(sync->other_key),
										cu_datum_text(sync->keytype, key), sync->this_name),
								 errdetail("While migration %lld is live, every row of \"%s\" belongs to a row of \"%s\".",
										   (long long) sync->migration_id, sync->this_name, sync->other_name),
								 errhint("Insert the row into \"%s\" first (or through the compatibility view).",
										 sync->other_name)));
				}
			});
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		key = split_sync_key(sync, trigdata->tg_trigtuple, desc, &keynull);
		CU_GUARDED(
			{
				cu_spi_exec_plan(sync->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
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
