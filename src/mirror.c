/*-------------------------------------------------------------------------
 * mirror.c
 *	  The sync triggers: while a migration is live, writes to one shape are
 *	  mirrored into the other.  What goes where comes from a map in the
 *	  catalog (customer_unify.sync_map, one argument per trigger); 1.0's
 *	  triggers, whose arguments carried the names themselves, are served by
 *	  the same code (the split_sync_* entry points).
 *
 *	  Forward (source -> target): the row trigger appends the key to a
 *	  pending run (one kind of write for one trigger); the run is written by
 *	  the statement-level trigger at the end of the statement, when it
 *	  reaches MIRROR_BATCH_ROWS keys, or before a write of another kind.  A
 *	  run of one row is written with that row's values by one single-table
 *	  statement, unless a later write of the transaction replaced that row
 *	  version (it has an xmax) or any statement ran since the values were
 *	  taken (the command counter moved: a guarded nested write may have
 *	  changed the row); then, as for longer runs, the rows are read back by
 *	  key with one array-parameter statement, so the last write wins.  Once
 *	  the link foreign key exists its cascades carry deletes and key
 *	  changes, except under session_replication_role = replica, where
 *	  foreign keys do not cascade and the mirror does it.
 *
 *	  Backward (target -> source): a change of the target's moved columns is
 *	  copied back into the source row at once; a target row without a source
 *	  row, a change of the link, and deleting a target row whose source row
 *	  exists are refused (the tables stay 1:1 until finalize).
 *
 *	  Mirrored writes are integrity maintenance, like a foreign key's
 *	  cascades: they run after the caller's own write passed its checks, as
 *	  the owner of the table written, with row-level security not applied
 *	  (owner_context.c), under the migration's loop guard (guard.c).
 *	  Statements are prepared once per trigger and kept (plan_cache.c); keys
 *	  are compared with the operators of their unique index (keys.c).
 *	  Subtransaction aborts take their keys out of the pending run; a run
 *	  still pending at commit is an error, never a silent loss.
 *
 *	  TRUNCATE of the source is followed: the target is truncated too.
 *	  TRUNCATE of the target alone is refused.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define MIRROR_BATCH_ROWS 10000
#define LEGACY_SYNC_FIXED_ARGS 5

typedef struct Mirror
{
	int64		migration_id;
	bool		forward;		/* source -> target */
	Oid			self_relid;
	Oid			other_relid;
	Oid			other_owner;	/* mirrored writes run as this role */
	int			ncols;
	AttrNumber	key_attnum;		/* key on the trigger's table */
	AttrNumber *attnums;		/* mirrored columns on the trigger's table */
	CuKeyType	key;			/* of the trigger's key */
	char	   *migration_name; /* for messages */
	char	   *this_name;
	char	   *other_name;
	char	   *other_key;
	bool		batchable;		/* the key type has an array type */
	bool		linked;			/* the link FK (with cascades) exists */
	/* forward */
	SPIPlanPtr	upsert_one;
	SPIPlanPtr	insert_many;
	SPIPlanPtr	upsert_many;
	SPIPlanPtr	update_many;
	Oid		   *valtypes;
	SPIPlanPtr	insert_values;
	SPIPlanPtr	upsert_values;
	SPIPlanPtr	update_values;
	SPIPlanPtr	delete_one;
	SPIPlanPtr	delete_many;
	SPIPlanPtr	rekey;
	SPIPlanPtr	other_nonempty;
	/* backward */
	SPIPlanPtr	update_source;
	SPIPlanPtr	source_exists;
} Mirror;

/*
 * The description a Mirror is built from: a catalog map, or a 1.0 trigger's
 * arguments.
 */
typedef struct MirrorSpec
{
	int64		migration_id;
	bool		forward;
	Oid			other_relid;
	const char *self_key;
	const char *other_key;
	int			ncols;
	const char **self_cols;
	const char **other_cols;
} MirrorSpec;

static SPIPlanPtr
mirror_prepare_key(CuCacheEntry *entry, CuKeyType *kt, const char *sql, bool array)
{
	Oid			type = array ? kt->array_type : kt->type;

	return cu_prepare_kept(entry, sql, 1, &type);
}

static bool
mirror_link_fk_exists(Oid target, Oid source)
{
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		vals[2] = {ObjectIdGetDatum(target), ObjectIdGetDatum(source)};
	int			rc = SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_constraint c "
										   "WHERE c.conrelid OPERATOR(pg_catalog.=) $1 "
										   "AND c.confrelid OPERATOR(pg_catalog.=) $2 "
										   "AND c.contype OPERATOR(pg_catalog.=) 'f' "
										   "AND c.confdeltype OPERATOR(pg_catalog.=) 'c' "
										   "AND c.confupdtype OPERATOR(pg_catalog.=) 'c'",
										   2, types, vals, NULL, true, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: looking up the link foreign key failed");
	return SPI_processed > 0;
}

/* The migration's name, for messages (its id when the catalog has none: 1.0's triggers). */
static char *
mirror_migration_name(int64 migration_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(migration_id)};
	int			rc = SPI_execute_with_args("SELECT m.name FROM customer_unify.migration m "
										   "WHERE m.id OPERATOR(pg_catalog.=) $1",
										   1, types, values, NULL, false, 1);

	if (rc == SPI_OK_SELECT && SPI_processed == 1)
		return pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	return psprintf("%lld", (long long) migration_id);
}

static Mirror *
mirror_build(CuCacheEntry *entry, TriggerData *trigdata, MirrorSpec *spec)
{
	Relation	rel = trigdata->tg_relation;
	Relation	otherrel;
	Mirror	   *m;
	MemoryContext old;
	StringInfoData sql,
				cols,
				scols,
				sets;
	const char *other;
	const char *self;
	const char *key;
	const char *otherkey;
	CuKeyType	okt;
	int			i;

	old = MemoryContextSwitchTo(entry->cxt);
	m = palloc0(sizeof(Mirror));
	m->migration_id = spec->migration_id;
	m->forward = spec->forward;
	m->self_relid = RelationGetRelid(rel);
	m->other_relid = spec->other_relid;
	m->ncols = spec->ncols;
	m->key_attnum = cu_attnum_or_error(rel, spec->self_key);
	m->attnums = palloc(sizeof(AttrNumber) * Max(1, m->ncols));
	for (i = 0; i < m->ncols; i++)
		m->attnums[i] = cu_attnum_or_error(rel, spec->self_cols[i]);
	cu_key_type_for_column(rel, m->key_attnum, &m->key);
	m->this_name = pstrdup(RelationGetRelationName(rel));
	m->migration_name = mirror_migration_name(m->migration_id);

	otherrel = table_open(spec->other_relid, AccessShareLock);
	m->other_name = pstrdup(RelationGetRelationName(otherrel));
	m->other_key = pstrdup(spec->other_key);
	m->other_owner = otherrel->rd_rel->relowner;
	cu_key_type_for_column(otherrel, cu_attnum_or_error(otherrel, spec->other_key), &okt);
	for (i = 0; i < m->ncols; i++)
		(void) cu_attnum_or_error(otherrel, spec->other_cols[i]);
	MemoryContextSwitchTo(old);

	cu_cache_depends_on(entry, m->self_relid);
	cu_cache_depends_on(entry, m->other_relid);

	other = cu_relation_qualified_name(m->other_relid);
	self = cu_relation_qualified_name(m->self_relid);
	key = quote_identifier(spec->self_key);
	otherkey = quote_identifier(spec->other_key);

	initStringInfo(&sql);
	initStringInfo(&cols);
	initStringInfo(&scols);
	initStringInfo(&sets);
	for (i = 0; i < m->ncols; i++)
	{
		const char *oc = quote_identifier(spec->other_cols[i]);
		const char *sc = quote_identifier(spec->self_cols[i]);

		appendStringInfo(&cols, ", %s", oc);
		appendStringInfo(&scols, ", s.%s", sc);
		appendStringInfo(&sets, "%s%s = EXCLUDED.%s", i ? ", " : "", oc, oc);
	}

	if (m->forward)
	{
		/* INSERT ... ON CONFLICT (link) DO UPDATE: right whether or not the backfill got there first */
		appendStringInfo(&sql,
						 "INSERT INTO %s AS t (%s%s) SELECT s.%s%s FROM ONLY %s s "
						 "WHERE s.%s %s $1 ON CONFLICT (%s) DO UPDATE SET %s",
						 other, otherkey, cols.data, key, scols.data, self, key, m->key.eq,
						 otherkey, sets.data);
		m->upsert_one = mirror_prepare_key(entry, &m->key, sql.data, false);

		m->valtypes = MemoryContextAlloc(entry->cxt, sizeof(Oid) * (m->ncols + 1));
		m->valtypes[0] = m->key.type;
		for (i = 0; i < m->ncols; i++)
			m->valtypes[i + 1] = TupleDescAttr(RelationGetDescr(rel), m->attnums[i] - 1)->atttypid;
		{
			StringInfoData vals,
						assign;

			initStringInfo(&vals);
			initStringInfo(&assign);
			for (i = 0; i < m->ncols; i++)
			{
				appendStringInfo(&vals, ", $%d", i + 2);
				appendStringInfo(&assign, "%s%s = $%d", i ? ", " : "",
								 quote_identifier(spec->other_cols[i]), i + 2);
			}
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO %s (%s%s) VALUES ($1%s)", other, otherkey, cols.data, vals.data);
			m->insert_values = cu_prepare_kept(entry, sql.data, m->ncols + 1, m->valtypes);
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO %s AS t (%s%s) VALUES ($1%s) ON CONFLICT (%s) DO UPDATE SET %s",
							 other, otherkey, cols.data, vals.data, otherkey, sets.data);
			m->upsert_values = cu_prepare_kept(entry, sql.data, m->ncols + 1, m->valtypes);
			resetStringInfo(&sql);
			if (m->ncols > 0)
			{
				appendStringInfo(&sql, "UPDATE ONLY %s SET %s WHERE %s %s $1",
								 other, assign.data, otherkey, okt.eq);
				m->update_values = cu_prepare_kept(entry, sql.data, m->ncols + 1, m->valtypes);
			}
		}

		resetStringInfo(&sql);
		appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s %s $1", other, otherkey, okt.eq);
		m->delete_one = mirror_prepare_key(entry, &m->key, sql.data, false);

		m->linked = mirror_link_fk_exists(m->other_relid, m->self_relid);

		m->batchable = OidIsValid(m->key.array_type);
		if (m->batchable)
		{
			resetStringInfo(&sql);
			appendStringInfo(&sql,
							 "INSERT INTO %s AS t (%s%s) SELECT s.%s%s FROM ONLY %s s "
							 "WHERE s.%s %s ANY ($1) ON CONFLICT (%s) DO UPDATE SET %s",
							 other, otherkey, cols.data, key, scols.data, self, key, m->key.eq,
							 otherkey, sets.data);
			m->upsert_many = mirror_prepare_key(entry, &m->key, sql.data, true);

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
							 "WHERE s.%s %s ANY ($1)",
							 other, otherkey, cols.data, key, scols.data, self, key, m->key.eq);
			m->insert_many = mirror_prepare_key(entry, &m->key, sql.data, true);

			resetStringInfo(&sql);
			appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s %s ANY ($1)", other, otherkey, okt.eq);
			m->delete_many = mirror_prepare_key(entry, &m->key, sql.data, true);

			if (m->ncols > 0)
			{
				resetStringInfo(&sql);
				appendStringInfo(&sql, "UPDATE ONLY %s AS t SET ", other);
				for (i = 0; i < m->ncols; i++)
					appendStringInfo(&sql, "%s%s = s.%s", i ? ", " : "",
									 quote_identifier(spec->other_cols[i]),
									 quote_identifier(spec->self_cols[i]));
				appendStringInfo(&sql, " FROM ONLY %s s WHERE s.%s %s ANY ($1) "
								 "AND t.%s %s s.%s", self, key, m->key.eq, otherkey, okt.eq, key);
				m->update_many = mirror_prepare_key(entry, &m->key, sql.data, true);
			}
		}

		resetStringInfo(&sql);
		{
			Oid			types[2] = {m->key.type, m->key.type};

			appendStringInfo(&sql, "UPDATE ONLY %s SET %s = $2 WHERE %s %s $1",
							 other, otherkey, otherkey, okt.eq);
			m->rekey = cu_prepare_kept(entry, sql.data, 2, types);
		}
		resetStringInfo(&sql);
		appendStringInfo(&sql, "SELECT 1 FROM ONLY %s LIMIT 1", other);
		m->other_nonempty = cu_prepare_kept(entry, sql.data, 0, NULL);
	}
	else
	{
		if (m->ncols > 0)
		{
			appendStringInfo(&sql, "UPDATE ONLY %s AS s SET ", other);
			for (i = 0; i < m->ncols; i++)
				appendStringInfo(&sql, "%s%s = t.%s", i ? ", " : "",
								 quote_identifier(spec->other_cols[i]),
								 quote_identifier(spec->self_cols[i]));
			appendStringInfo(&sql, " FROM ONLY %s t WHERE t.%s %s $1 AND s.%s %s $1",
							 self, key, m->key.eq, otherkey, okt.eq);
			m->update_source = mirror_prepare_key(entry, &m->key, sql.data, false);
		}
		resetStringInfo(&sql);
		appendStringInfo(&sql, "SELECT 1 FROM ONLY %s WHERE %s %s $1", other, otherkey, okt.eq);
		m->source_exists = mirror_prepare_key(entry, &m->key, sql.data, false);
	}

	table_close(otherrel, AccessShareLock);
	entry->data = m;
	entry->valid = true;
	return m;
}

/* A map from the catalog: which side the trigger is on decides the direction. */
static Mirror *
mirror_build_from_map(CuCacheEntry *entry, TriggerData *trigdata)
{
	int64		map_id = cu_trigger_map_id(trigdata);
	CuMap		map;
	MirrorSpec	spec;
	MemoryContext old = MemoryContextSwitchTo(entry->cxt);

	cu_map_load(map_id, &map, false);
	MemoryContextSwitchTo(old);
	if (map.from_relid != RelationGetRelid(trigdata->tg_relation))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" is on \"%s\", but sync map %lld copies from another relation",
						trigdata->tg_trigger->tgname, RelationGetRelationName(trigdata->tg_relation),
						(long long) map_id)));
	spec.migration_id = map.migration_id;
	spec.forward = map.from_relid == map.source_relid;
	spec.other_relid = map.to_relid;
	spec.self_key = map.from_key;
	spec.other_key = map.to_key;
	spec.ncols = map.ncols;
	spec.self_cols = map.from_columns;
	spec.other_cols = map.to_columns;
	return mirror_build(entry, trigdata, &spec);
}

/*
 * 1.0 trigger arguments: 0 migration id, 1 other schema, 2 other table,
 * 3 key column on this side, 4 key column on the other side, 5.. moved columns.
 */
static Mirror *
mirror_build_legacy(CuCacheEntry *entry, TriggerData *trigdata, bool forward)
{
	Trigger    *trigger = trigdata->tg_trigger;
	char	  **args = trigger->tgargs;
	MirrorSpec	spec;

	if (trigger->tgnargs <= LEGACY_SYNC_FIXED_ARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" has %d arguments, expected more than %d",
						trigger->tgname, trigger->tgnargs, LEGACY_SYNC_FIXED_ARGS)));
	spec.migration_id = pg_strtoint64(args[0]);
	spec.forward = forward;
	spec.other_relid = cu_relid_or_error(args[1], args[2]);
	spec.self_key = args[3];
	spec.other_key = args[4];
	spec.ncols = trigger->tgnargs - LEGACY_SYNC_FIXED_ARGS;
	/* 1.0 moved columns keep their names */
	spec.self_cols = spec.other_cols = (const char **) &args[LEGACY_SYNC_FIXED_ARGS];
	return mirror_build(entry, trigdata, &spec);
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
	CuCacheEntry *entry;		/* whose plans (kept until the run is written) */
	Mirror	   *mirror;
	MirrorKind	kind;
	int			n;
	int			cap;
	Datum	   *keys;
	SubTransactionId *subids;
	bool		has_values;		/* the first row's values, see mirror_append */
	CommandId	values_cid;		/* the command counter when they were taken */
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
mirror_tuple_is_latest(HeapTuple tuple)
{
	HeapTupleHeader h = tuple->t_data;

	if (h->t_infomask & HEAP_XMAX_INVALID)
		return true;
	if (!TransactionIdIsValid(HeapTupleHeaderGetRawXmax(h)))
		return true;
	return HEAP_XMAX_IS_LOCKED_ONLY(h->t_infomask);
}

/*
 * Run the statements in __VA_ARGS__ as the owner of the table written, under
 * the migration's loop guard and an SPI connection.
 */
#define MIRROR_AS_OWNER(m, ...) \
	do { \
		CuSavedUser save_ = {0}; \
		SPI_connect(); \
		cu_guard_push((m)->migration_id); \
		cu_become((m)->other_owner, true, &save_); \
		PG_TRY(); \
		{ \
			__VA_ARGS__; \
		} \
		PG_FINALLY(); \
		{ \
			cu_unbecome(&save_); \
			cu_guard_pop(); \
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
		Mirror	   *m = run.mirror;
		bool		use_values = run.n == 1 && run.has_values &&
			run.values_cid == GetCurrentCommandId(false) &&
			(run.kind != MIRROR_UPDATE || m->update_values != NULL);

		if (use_values)
		{
			/* one row: one single-table statement with its values */
			MIRROR_AS_OWNER(m,
				{
					if (run.kind == MIRROR_INSERT)
						cu_spi_exec_plan(m->insert_values, run.values, run.vnulls, SPI_OK_INSERT,
										 "mirroring an insert");
					else if (run.kind == MIRROR_UPSERT)
						cu_spi_exec_plan(m->upsert_values, run.values, run.vnulls, SPI_OK_INSERT,
										 "mirroring an update");
					else
						cu_spi_exec_plan(m->update_values, run.values, run.vnulls, SPI_OK_UPDATE,
										 "mirroring an update");
				});
		}
		else if (run.n > 0 && (run.kind != MIRROR_UPDATE || m->update_many != NULL))
		{
			MemoryContext old = MemoryContextSwitchTo(run.cxt);
			int			dims[1] = {run.n};
			int			lbs[1] = {1};
			Datum		param;
			char		pnull[2] = {' ', '\0'};

			param = PointerGetDatum(construct_md_array(run.keys, NULL, 1, dims, lbs, m->key.type,
													   m->key.len, m->key.byval, m->key.align));
			MemoryContextSwitchTo(old);
			MIRROR_AS_OWNER(m,
				{
					if (run.kind == MIRROR_INSERT)
						cu_spi_exec_plan(m->insert_many, &param, pnull, SPI_OK_INSERT,
										 "mirroring inserts");
					else if (run.kind == MIRROR_UPSERT)
						cu_spi_exec_plan(m->upsert_many, &param, pnull, SPI_OK_INSERT,
										 "mirroring updates");
					else if (run.kind == MIRROR_UPDATE)
						cu_spi_exec_plan(m->update_many, &param, pnull, SPI_OK_UPDATE,
										 "mirroring updates");
					else
						cu_spi_exec_plan(m->delete_many, &param, pnull, SPI_OK_DELETE,
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
mirror_append(CuCacheEntry *entry, Mirror *m, MirrorKind kind, Datum key,
			  HeapTuple tuple, TupleDesc desc)
{
	MemoryContext old;

	if (mirror_run.kind != MIRROR_NONE && (mirror_run.entry != entry || mirror_run.kind != kind))
		mirror_flush();
	if (mirror_run.kind == MIRROR_NONE)
	{
		mirror_run.cxt = mirror_get_cxt();
		mirror_run.entry = entry;
		mirror_run.mirror = m;
		mirror_run.kind = kind;
	}

	old = MemoryContextSwitchTo(mirror_run.cxt);

	/*
	 * Keep the first row's values: a statement that writes one row (the
	 * usual OLTP case) is then mirrored by one single-table statement, with
	 * no re-read of the source.  Only if the row version is still the
	 * latest; mirror_flush also checks that nothing ran in between.
	 */
	if (mirror_run.n == 0 && tuple != NULL && mirror_tuple_is_latest(tuple))
	{
		int			i;
		bool		isnull;

		mirror_run.values = palloc(sizeof(Datum) * (m->ncols + 1));
		mirror_run.vnulls = palloc(m->ncols + 2);
		mirror_run.values[0] = (Datum) 0;	/* the key, set below */
		mirror_run.vnulls[0] = ' ';
		for (i = 0; i < m->ncols; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, m->attnums[i] - 1);
			Datum		v = heap_getattr(tuple, m->attnums[i], desc, &isnull);

			mirror_run.vnulls[i + 1] = isnull ? 'n' : ' ';
			mirror_run.values[i + 1] = isnull ? (Datum) 0
				: att->attlen == -1 ? PointerGetDatum(PG_DETOAST_DATUM_COPY(v))
				: datumCopy(v, att->attbyval, att->attlen);
		}
		mirror_run.vnulls[m->ncols + 1] = '\0';
		mirror_run.has_values = true;
		mirror_run.values_cid = GetCurrentCommandId(false);
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
	if (m->key.len == -1)
		mirror_run.keys[mirror_run.n] = PointerGetDatum(PG_DETOAST_DATUM_COPY(key));
	else
		mirror_run.keys[mirror_run.n] = datumCopy(key, m->key.byval, m->key.len);
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
						 errdetail("The statement-level sync trigger did not fire; the transaction is rolled back so that nothing is lost."),
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
		if (mirror_run.n == 0)
			mirror_run.has_values = false;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < mirror_run.n; i++)
			if (mirror_run.subids[i] == mySubid)
				mirror_run.subids[i] = parentSubid;
	}
}

void
cu_mirror_init(void)
{
	RegisterXactCallback(mirror_xact_callback, NULL);
	RegisterSubXactCallback(mirror_subxact_callback, NULL);
}

typedef enum MirrorOrigin
{
	MIRROR_FROM_MAP,
	MIRROR_LEGACY_SOURCE,
	MIRROR_LEGACY_TARGET
} MirrorOrigin;

static Mirror *
mirror_get(TriggerData *trigdata, MirrorOrigin origin, CuCacheEntry **entryp)
{
	CuCacheEntry *entry = cu_cache_lookup(trigdata->tg_trigger->tgoid);
	Mirror	   *built;

	*entryp = entry;
	if (entry->valid)
		return (Mirror *) entry->data;
	/* a pending run still uses this entry's plans: write it before they are rebuilt */
	if (mirror_run.kind != MIRROR_NONE && mirror_run.entry == entry)
		mirror_flush();
	cu_cache_reset(entry);
	/* prepared statements need an SPI connection; the kept plans outlive it */
	SPI_connect();
	if (origin == MIRROR_FROM_MAP)
		built = mirror_build_from_map(entry, trigdata);
	else
		built = mirror_build_legacy(entry, trigdata, origin == MIRROR_LEGACY_SOURCE);
	SPI_finish();
	return built;
}

static bool
mirror_same(Datum a, bool anull, Datum b, bool bnull, Form_pg_attribute att)
{
	if (anull || bnull)
		return anull == bnull;
	return datumIsEqual(a, b, att->attbyval, att->attlen);
}

/* Did any mirrored column change?  (A binary difference is enough to mirror.) */
static bool
mirror_changed(Mirror *m, TupleDesc desc, HeapTuple oldtup, HeapTuple newtup)
{
	int			i;

	for (i = 0; i < m->ncols; i++)
	{
		bool		on,
					nn;
		Datum		o = heap_getattr(oldtup, m->attnums[i], desc, &on);
		Datum		n = heap_getattr(newtup, m->attnums[i], desc, &nn);

		if (!mirror_same(o, on, n, nn, TupleDescAttr(desc, m->attnums[i] - 1)))
			return true;
	}
	return false;
}

static void
mirror_write_one(Mirror *m, SPIPlanPtr plan, Datum key, int expected, const char *what)
{
	char		knull[2] = {' ', '\0'};

	MIRROR_AS_OWNER(m, cu_spi_exec_plan(plan, &key, knull, expected, what));
}

/* Do the link foreign key's cascades carry deletes and key changes now? */
static bool
mirror_cascades(Mirror *m)
{
	return m->linked && SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA;
}

static void
mirror_forward(TriggerData *trigdata, Mirror *m, CuCacheEntry *entry)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	Datum		key;
	bool		keynull;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		key = heap_getattr(trigdata->tg_trigtuple, m->key_attnum, desc, &keynull);
		if (m->batchable)
			mirror_append(entry, m, MIRROR_INSERT, key, trigdata->tg_trigtuple, desc);
		else
			mirror_write_one(m, m->upsert_one, key, SPI_OK_INSERT, "mirroring an insert");
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		newnull;
		Datum		oldkey = heap_getattr(trigdata->tg_trigtuple, m->key_attnum, desc, &keynull);
		Datum		newkey = heap_getattr(trigdata->tg_newtuple, m->key_attnum, desc, &newnull);
		bool		rekey = !mirror_same(oldkey, keynull, newkey, newnull,
										 TupleDescAttr(desc, m->key_attnum - 1));

		if (mirror_cascades(m) && m->batchable)
		{
			/* the FK's ON UPDATE CASCADE has moved the link; copy the values */
			if (rekey || mirror_changed(m, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
				mirror_append(entry, m, MIRROR_UPDATE, newkey, trigdata->tg_newtuple, desc);
		}
		else if (rekey)
		{
			/* a key change is written at once, in order with the run before it */
			Datum		kv[2] = {oldkey, newkey};
			char		kn[3] = {' ', ' ', '\0'};

			mirror_flush();
			MIRROR_AS_OWNER(m,
				{
					if (!mirror_cascades(m))
						cu_spi_exec_plan(m->rekey, kv, kn, SPI_OK_UPDATE, "mirroring a key change");
					cu_spi_exec_plan(m->upsert_one, &newkey, kn + 1, SPI_OK_INSERT, "mirroring an update");
				});
		}
		else if (mirror_changed(m, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
		{
			if (m->batchable)
				mirror_append(entry, m, m->linked ? MIRROR_UPDATE : MIRROR_UPSERT, newkey,
							  trigdata->tg_newtuple, desc);
			else
				mirror_write_one(m, m->upsert_one, newkey, SPI_OK_INSERT, "mirroring an update");
		}
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (mirror_cascades(m))
			return;				/* ON DELETE CASCADE did it */
		key = heap_getattr(trigdata->tg_trigtuple, m->key_attnum, desc, &keynull);
		if (m->batchable)
			mirror_append(entry, m, MIRROR_DELETE, key, NULL, NULL);
		else
			mirror_write_one(m, m->delete_one, key, SPI_OK_DELETE, "mirroring a delete");
	}
}

static void
mirror_backward(TriggerData *trigdata, Mirror *m)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	Datum		key;
	bool		keynull;
	char		knull[2] = {' ', '\0'};

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		HeapTuple	newtuple = is_insert ? trigdata->tg_trigtuple : trigdata->tg_newtuple;
		bool		missing = false;

		key = heap_getattr(newtuple, m->key_attnum, desc, &keynull);
		if (keynull)
			return;				/* the NOT NULL constraint reports it */
		if (!is_insert)
		{
			bool		oldnull;
			Datum		oldkey = heap_getattr(trigdata->tg_trigtuple, m->key_attnum, desc, &oldnull);

			if (!mirror_same(oldkey, oldnull, key, keynull, TupleDescAttr(desc, m->key_attnum - 1)))
			{
				bool		old_exists = false,
							new_exists = false;

				/* the link foreign key's ON UPDATE CASCADE following a key change of the source is fine */
				MIRROR_AS_OWNER(m,
					{
						cu_spi_exec_plan(m->source_exists, &oldkey, knull, SPI_OK_SELECT, "checking the source row");
						old_exists = SPI_processed > 0;
						cu_spi_exec_plan(m->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
						new_exists = SPI_processed > 0;
					});
				if (!old_exists && new_exists)
					return;
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the link column of \"%s\" while migration \"%s\" is live",
								m->this_name, m->migration_name),
						 errdetail("\"%s\" is kept 1:1 with \"%s\" until the migration is finalized.",
								   m->this_name, m->other_name),
						 errhint("Change the key in \"%s\"; the change is mirrored.", m->other_name)));
			}
			if (!mirror_changed(m, desc, trigdata->tg_trigtuple, trigdata->tg_newtuple))
				return;
		}
		MIRROR_AS_OWNER(m,
			{
				if (m->update_source != NULL)
					cu_spi_exec_plan(m->update_source, &key, knull, SPI_OK_UPDATE,
									 "mirroring into the source");
				if (m->update_source == NULL || SPI_processed == 0)
				{
					/* no source row, or the target row is already gone again */
					cu_spi_exec_plan(m->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
					missing = SPI_processed == 0;
				}
			});
		if (missing)
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("no row in \"%s\" with %s = %s for the new row of \"%s\"",
							m->other_name, quote_identifier(m->other_key),
							cu_datum_text(m->key.type, key), m->this_name),
					 errdetail("While migration \"%s\" is live, every row of \"%s\" belongs to a row of \"%s\".",
							   m->migration_name, m->this_name, m->other_name),
					 errhint("Insert the row into \"%s\" first (or through the compatibility view).",
							 m->other_name)));
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		bool		exists = false;

		key = heap_getattr(trigdata->tg_trigtuple, m->key_attnum, desc, &keynull);
		MIRROR_AS_OWNER(m,
			{
				cu_spi_exec_plan(m->source_exists, &key, knull, SPI_OK_SELECT, "checking the source row");
				exists = SPI_processed > 0;
			});
		if (exists)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot delete from \"%s\" while \"%s\" still has the row",
							m->this_name, m->other_name),
					 errdetail("Migration \"%s\" keeps \"%s\" 1:1 with \"%s\" until it is finalized.",
							   m->migration_name, m->this_name, m->other_name),
					 errhint("Delete the row from \"%s\"; the delete is mirrored.", m->other_name)));
	}
}

static Datum
mirror_row(FunctionCallInfo fcinfo, MirrorOrigin origin, const char *funcname)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Mirror	   *m;
	CuCacheEntry *entry;

	cu_check_trigger_call(fcinfo, funcname, true, false);
	m = mirror_get(trigdata, origin, &entry);
	if (cu_guard_active(m->migration_id))
		return PointerGetDatum(NULL);

	/* the view router asked for the row version its statement stored */
	if (cu_capture_armed(m->self_relid) && !TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		cu_capture_offer(trigdata->tg_relation,
						 TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
						 : trigdata->tg_trigtuple);

	if (m->forward)
		mirror_forward(trigdata, m, entry);
	else
		mirror_backward(trigdata, m);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_mirror_row);

/* customer_unify.mirror_row(map id): AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW */
Datum
cu_mirror_row(PG_FUNCTION_ARGS)
{
	return mirror_row(fcinfo, MIRROR_FROM_MAP, "mirror_row");
}

PG_FUNCTION_INFO_V1(cu_split_sync_source);

/* 1.0: customer_unify.split_sync_source(...) */
Datum
cu_split_sync_source(PG_FUNCTION_ARGS)
{
	return mirror_row(fcinfo, MIRROR_LEGACY_SOURCE, "split_sync_source");
}

PG_FUNCTION_INFO_V1(cu_split_sync_target);

/* 1.0: customer_unify.split_sync_target(...) */
Datum
cu_split_sync_target(PG_FUNCTION_ARGS)
{
	return mirror_row(fcinfo, MIRROR_LEGACY_TARGET, "split_sync_target");
}

PG_FUNCTION_INFO_V1(cu_mirror_flush);

/* AFTER ... FOR EACH STATEMENT on the source: write the pending run. */
Datum
cu_mirror_flush(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mirror_flush: must be fired AFTER ... FOR EACH STATEMENT")));
	mirror_flush();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_split_sync_flush);

/* 1.0: customer_unify.split_sync_flush() */
Datum
cu_split_sync_flush(PG_FUNCTION_ARGS)
{
	return cu_mirror_flush(fcinfo);
}

PG_FUNCTION_INFO_V1(cu_mirror_truncate);

/*
 * customer_unify.mirror_truncate(map id): TRUNCATE statement triggers.
 * On the source, BEFORE marks the truncation (so the target's trigger lets
 * a TRUNCATE ... CASCADE through) and AFTER truncates the target too; on
 * the target, BEFORE refuses a TRUNCATE that does not come from the source.
 */
Datum
cu_mirror_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	CuCacheEntry *entry;
	Mirror	   *m;

	cu_check_trigger_call(fcinfo, "mirror_truncate", false, false);
	if (!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mirror_truncate: must be fired by TRUNCATE")));
	m = mirror_get(trigdata, MIRROR_FROM_MAP, &entry);

	if (!m->forward)
	{
		if (!cu_truncating(m->migration_id) && !cu_guard_active(m->migration_id))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("cannot truncate \"%s\": it is the target of live migration \"%s\"",
							m->this_name, m->migration_name),
					 errdetail("\"%s\" holds a copy of \"%s\" that is kept in sync until finalize.",
							   m->this_name, m->other_name),
					 errhint("TRUNCATE \"%s\" instead; the target follows.", m->other_name)));
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BEFORE(trigdata->tg_event))
	{
		cu_truncating_set(m->migration_id, true);
		return PointerGetDatum(NULL);
	}
	/* AFTER: the target follows, unless a CASCADE truncated it already */
	mirror_flush();
	MIRROR_AS_OWNER(m,
		{
			cu_spi_exec_plan(m->other_nonempty, NULL, NULL, SPI_OK_SELECT, "checking the target");
			if (SPI_processed > 0)
			{
				int			rc = SPI_execute(psprintf("TRUNCATE ONLY %s",
													  cu_relation_qualified_name(m->other_relid)),
											 false, 0);

				if (rc != SPI_OK_UTILITY)
					elog(ERROR, "customer_unify: truncating the target failed: %s",
						 SPI_result_code_string(rc));
			}
		});
	cu_truncating_set(m->migration_id, false);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(cu_route_capture);

/*
 * customer_unify.route_capture(): after finalize, AFTER INSERT OR UPDATE row
 * trigger (WHEN customer_unify._route_capturing()) on the source and the
 * target, giving the view router the row versions its statements stored.
 */
Datum
cu_route_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	cu_check_trigger_call(fcinfo, "route_capture", true, false);
	if (cu_capture_armed(RelationGetRelid(trigdata->tg_relation)) &&
		!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		cu_capture_offer(trigdata->tg_relation,
						 TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
						 : trigdata->tg_trigtuple);
	return PointerGetDatum(NULL);
}
