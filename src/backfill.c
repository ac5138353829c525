/*-------------------------------------------------------------------------
 * backfill.c
 *	  The batch copy engine: CALL customer_unify.backfill(name, ...).
 *
 *	  A C procedure on a non-atomic SPI connection (as PL/pgSQL runs
 *	  procedures that COMMIT).  It copies the source's existing rows into
 *	  the target in primary-key order ("keyset" batches): per batch one
 *	  INSERT ... SELECT copies the next batch_size keys not yet in the
 *	  target (an anti-join probe, ORDER BY key LIMIT n, RETURNING the last
 *	  key), and the checkpoint (last key, counters) is updated in the same
 *	  transaction, which is then committed.  A cancel, crash or restart loses at most the batch in
 *	  flight; the next call resumes after the last committed key.  Rows
 *	  written concurrently are handled by the sync triggers: their upserts
 *	  win over the copy (the copy skips keys already in the target).  A
 *	  delete can remove a source row a batch has just copied from its
 *	  snapshot (its mirror ran before the copy was visible).  Once every
 *	  batch is in, the end phase locks the source (waiting out writes in
 *	  flight) and adds the link foreign key NOT VALID, whose cascades keep
 *	  the tables 1:1 from then on; validating it finds any such orphan, and
 *	  only then are orphans removed and the key validated again.  Batches
 *	  take no lock that writers wait for.
 *
 *	  Each batch runs in a subtransaction under lock_timeout; on a lock
 *	  timeout it backs off and retries.  Statements are prepared once and
 *	  kept across commits; per-batch memory lives in a context reset every
 *	  batch, so memory does not grow with the table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "customer_unify.h"

#define BACKFILL_MAX_LOCK_RETRIES	50
#define BACKFILL_ANTI_JOIN_BATCHES	16	/* after a batch met a mirrored row */
#define BACKFILL_NOTICE_INTERVAL_MS	5000

typedef struct BackfillJob
{
	int64		migration_id;
	char	   *name;
	char	   *source;			/* qualified, quoted */
	char	   *target;
	char	   *key;			/* quoted */
	char	   *link;
	char	   *keytype;		/* qualified type name for casts */
	char	   *collist;		/* quoted moved columns, comma separated */
	char	   *scollist;		/* the same, prefixed with s. */
	SPIPlanPtr	bound_first;
	SPIPlanPtr	bound_next;
	SPIPlanPtr	plain_first;	/* one statement per batch: LIMIT, RETURNING the last key */
	SPIPlanPtr	plain_next;
	SPIPlanPtr	fast_first;		/* the same with an anti-join on the target */
	SPIPlanPtr	fast_next;
	SPIPlanPtr	copy_first_safe;	/* ON CONFLICT DO NOTHING, after a race with a trigger */
	SPIPlanPtr	copy_next_safe;
	SPIPlanPtr	checkpoint;
} BackfillJob;

static void
backfill_wait_ms(int ms)
{
	if (ms <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static void
backfill_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "customer_unify: backfill statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* Transaction-local settings for each transaction the procedure opens. */
static void
backfill_local_settings(int lock_timeout_ms)
{
	char		buf[32];
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	snprintf(buf, sizeof(buf), "%dms", lock_timeout_ms);
	values[0] = CStringGetTextDatum(buf);
	/*
	 * synchronous_commit off is safe here: the checkpoint commits with its
	 * batch, so a batch lost in a crash is simply copied again.
	 */
	backfill_exec("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), "
				  "pg_catalog.set_config('lock_timeout', $1, true), "
				  "pg_catalog.set_config('synchronous_commit', 'off', true)",
				  1, types, values, NULL, SPI_OK_SELECT);
	SPI_freetuptable(SPI_tuptable);
}

static char *
backfill_getstr(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

static SPIPlanPtr
backfill_prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "customer_unify: SPI_prepare failed (%s) for: %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "customer_unify: SPI_keepplan failed");
	return plan;
}

/* Load the migration, check the caller may run it, and prepare the statements. */
static bool
backfill_load(BackfillJob *job, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *state;
	char	   *may;
	Oid			src_relid;
	Relation	src;
	AttrNumber	keyatt;
	StringInfoData buf;
	uint64		i;

	values[0] = CStringGetTextDatum(name);
	backfill_exec("SELECT m.id, m.state, pg_catalog.pg_has_role(m.owner, 'MEMBER'), "
				  "m.spec->>'source_schema', m.spec->>'source_table', m.spec->>'key_column', "
				  "m.spec->>'target_schema', m.spec->>'target_table', m.spec->>'link_column', m.kind "
				  "FROM customer_unify.migration m WHERE m.name OPERATOR(pg_catalog.=) $1",
				  1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" does not exist", name),
				 errhint("List migrations with: SELECT name, state FROM customer_unify.progress;")));

	job->name = pstrdup(name);
	job->migration_id = pg_strtoint64(backfill_getstr(1));
	state = backfill_getstr(2);
	may = backfill_getstr(3);
	if (strcmp(may, "t") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for migration \"%s\"", name)));
	if (strcmp(state, "backfilled") == 0 || strcmp(state, "verified") == 0 ||
		strcmp(state, "cut_over") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already backfilled", name)));
		return false;
	}
	if (strcmp(state, "started") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot backfill migration \"%s\": it is %s", name, state),
				 errdetail("backfill needs state started."),
				 errhint(strcmp(state, "planned") == 0
						 ? "Run SELECT customer_unify.start(...) first."
						 : "The migration is past the backfill.")));

	{
		char	   *sschema = backfill_getstr(4),
				   *stable = backfill_getstr(5),
				   *key = backfill_getstr(6),
				   *tschema = backfill_getstr(7),
				   *ttable = backfill_getstr(8),
				   *link = backfill_getstr(9);

		src_relid = cu_relid_or_error(sschema, stable);
		(void) cu_relid_or_error(tschema, ttable);
		job->source = pstrdup(cu_qualified_name(sschema, stable));
		job->target = pstrdup(cu_qualified_name(tschema, ttable));
		job->key = pstrdup(quote_identifier(key));
		job->link = pstrdup(quote_identifier(link));

		src = table_open(src_relid, AccessShareLock);
		keyatt = cu_attnum_or_error(src, key);
		job->keytype = format_type_be_qualified(TupleDescAttr(RelationGetDescr(src), keyatt - 1)->atttypid);
		table_close(src, AccessShareLock);
	}

	backfill_exec("SELECT c FROM customer_unify.migration m, "
				  "pg_catalog.jsonb_array_elements_text(m.spec->'columns') WITH ORDINALITY x(c, n) "
				  "WHERE m.name OPERATOR(pg_catalog.=) $1 ORDER BY n",
				  1, types, values, NULL, SPI_OK_SELECT);
	{
		StringInfoData cols,
					scols;

		initStringInfo(&cols);
		initStringInfo(&scols);
		for (i = 0; i < SPI_processed; i++)
		{
			const char *c = quote_identifier(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));

			appendStringInfo(&cols, ", %s", c);
			appendStringInfo(&scols, ", s.%s", c);
		}
		job->collist = cols.data;
		job->scollist = scols.data;
	}

	/* the batch's upper key: one index(-only) probe */
	initStringInfo(&buf);
	{
		Oid			btypes[3] = {TEXTOID, TEXTOID, INT8OID};

		appendStringInfo(&buf,
						 "SELECT s.%s::pg_catalog.text FROM ONLY %s s WHERE s.%s <= $2::%s "
						 "ORDER BY s.%s OFFSET $3 LIMIT 1",
						 job->key, job->source, job->key, job->keytype, job->key);
		job->bound_first = backfill_prepare(buf.data, 3, btypes);
		resetStringInfo(&buf);
		appendStringInfo(&buf,
						 "SELECT s.%s::pg_catalog.text FROM ONLY %s s WHERE s.%s > $1::%s AND s.%s <= $2::%s "
						 "ORDER BY s.%s OFFSET $3 LIMIT 1",
						 job->key, job->source, job->key, job->keytype, job->key, job->keytype, job->key);
		job->bound_next = backfill_prepare(buf.data, 3, btypes);

		/*
		 * The copy of one key range, three ways.  Plain: the cheapest, a
		 * bare INSERT ... SELECT; it fails with a unique violation when the
		 * range holds a row a sync trigger already mirrored.  The batch is
		 * then redone with an anti-join (one index probe per row, about half
		 * the cost of the speculative insertion ON CONFLICT needs), which
		 * stays in use for the next batches, mirrored rows tending to
		 * cluster.  A trigger that mirrors a row of the range while the
		 * anti-join runs makes it fail too, and the batch is redone once
		 * more with ON CONFLICT DO NOTHING.
		 */
		{
			int			safe;

			for (safe = -1; safe < 2; safe++)
			{
				int			first;

				for (first = 0; first < 2; first++)
				{
					resetStringInfo(&buf);
					appendStringInfo(&buf, "INSERT INTO %s (%s%s) SELECT s.%s%s FROM ONLY %s s WHERE ",
									 job->target, job->link, job->collist, job->key, job->scollist, job->source);
					if (!first)
						appendStringInfo(&buf, "s.%s > $1::%s AND ", job->key, job->keytype);
					appendStringInfo(&buf, "s.%s <= $2::%s", job->key, job->keytype);
					if (safe > 0)
						appendStringInfo(&buf, " ON CONFLICT (%s) DO NOTHING", job->link);
					else if (safe == 0)
						appendStringInfo(&buf, " AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE t.%s = s.%s)",
										 job->target, job->link, job->key);
					if (safe <= 0)
					{
						/*
						 * The usual path: the next batch_size rows not yet in
						 * the target, in key order, and the last key copied.
						 * Rows skipped because a trigger mirrored them lie
						 * below that key, so the checkpoint stays exact.
						 */
						StringInfoData fast;

						initStringInfo(&fast);
						appendStringInfo(&fast, "WITH ins AS (%s ORDER BY s.%s LIMIT $3 RETURNING %s) "
										 "SELECT (SELECT i.%s::pg_catalog.text FROM ins i ORDER BY i.%s DESC LIMIT 1), "
										 "(SELECT pg_catalog.count(*) FROM ins)",
										 buf.data, job->key, job->link, job->link, job->link);
						if (safe < 0 && first)
							job->plain_first = backfill_prepare(fast.data, 3, btypes);
						else if (safe < 0)
							job->plain_next = backfill_prepare(fast.data, 3, btypes);
						else if (first)
							job->fast_first = backfill_prepare(fast.data, 3, btypes);
						else
							job->fast_next = backfill_prepare(fast.data, 3, btypes);
						pfree(fast.data);
					}
					if (safe > 0 && first)
						job->copy_first_safe = backfill_prepare(buf.data, 2, btypes);
					else if (safe > 0)
						job->copy_next_safe = backfill_prepare(buf.data, 2, btypes);
				}
			}
		}
	}
	{
		Oid			ctypes[3] = {INT8OID, TEXTOID, INT8OID};

		job->checkpoint = backfill_prepare(
										   "UPDATE customer_unify.backfill_state b SET last_key = $2, "
										   "rows_done = b.rows_done OPERATOR(pg_catalog.+) $3, "
										   "run_rows = b.run_rows OPERATOR(pg_catalog.+) $3, "
										   "batches = b.batches OPERATOR(pg_catalog.+) 1, "
										   "updated_at = pg_catalog.clock_timestamp() "
										   "WHERE b.migration_id OPERATOR(pg_catalog.=) $1",
										   3, ctypes);
	}
	pfree(buf.data);
	return true;
}

/* Stop with a clear error if the migration was rolled back (or moved on) meanwhile. */
static void
backfill_check_state(BackfillJob *job)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job->migration_id)};
	char	   *state;

	backfill_exec("SELECT m.state FROM customer_unify.migration m WHERE m.id OPERATOR(pg_catalog.=) $1",
				  1, types, values, NULL, SPI_OK_SELECT);
	state = SPI_processed > 0 ? backfill_getstr(1) : pstrdup("(dropped)");
	SPI_freetuptable(SPI_tuptable);
	if (strcmp(state, "started") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backfill of migration \"%s\" stopped: the migration is now %s", job->name, state),
				 errdetail("Another session changed the migration while the backfill ran.")));
}

PG_FUNCTION_INFO_V1(cu_backfill);

Datum
cu_backfill(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		batch_size = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	int32		max_batches = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	int32		sleep_ms = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	int32		lock_timeout_ms = PG_ARGISNULL(4) ? 2000 : PG_GETARG_INT32(4);
	BackfillJob job;
	MemoryContext jobcxt,
				batchcxt;
	char	   *last_key = NULL;
	char	   *end_key = NULL;
	int64		rows_done;
	int64		rows_total;
	int64		batches = 0;
	int64		run_rows = 0;
	int64		rows_copied = 0;
	bool		complete = false;
	volatile int anti_join_batches = 0;
	TimestampTz run_start = GetCurrentTimestamp();
	TimestampTz last_notice = run_start;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("customer_unify.backfill cannot run inside a transaction block"),
				 errdetail("It commits after every batch so that it can resume after a cancel or crash."),
				 errhint("Run CALL customer_unify.backfill(...) on its own, outside BEGIN ... COMMIT.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null")));
	if (batch_size <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be positive, not %d", batch_size)));
	if (!PG_ARGISNULL(2) && max_batches <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_batches must be positive or NULL, not %d", max_batches)));
	if (sleep_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sleep_ms must not be negative, not %d", sleep_ms)));
	if (lock_timeout_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lock_timeout_ms must be positive, not %d", lock_timeout_ms)));

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	/* the SPI procedure context outlives the commits */
	jobcxt = CurrentMemoryContext;
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	batchcxt = AllocSetContextCreate(jobcxt, "customer_unify backfill batch", ALLOCSET_DEFAULT_SIZES);

	backfill_local_settings(lock_timeout_ms);
	memset(&job, 0, sizeof(job));
	if (!backfill_load(&job, name))
	{
		SPI_finish();
		PG_RETURN_VOID();
	}

	/* checkpoint row: created on the first call, the copy's end fixed then */
	{
		Oid			types[2] = {INT8OID, INT4OID};
		Datum		values[2] = {Int64GetDatum(job.migration_id), Int32GetDatum(batch_size)};
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "INSERT INTO customer_unify.backfill_state AS b "
						 "(migration_id, end_key, rows_total, batch_size, started_at, run_started_at, updated_at) "
						 "SELECT $1, (SELECT pg_catalog.max(s.%s)::pg_catalog.text FROM ONLY %s s), "
						 "CASE WHEN c.reltuples OPERATOR(pg_catalog.<) 0 "
						 "THEN (SELECT pg_catalog.count(*) FROM ONLY %s) ELSE c.reltuples::pg_catalog.int8 END, "
						 "$2, pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp() "
						 "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.regclass "
						 "ON CONFLICT (migration_id) DO UPDATE SET batch_size = EXCLUDED.batch_size, "
						 "run_started_at = pg_catalog.clock_timestamp(), run_rows = 0 "
						 "RETURNING b.last_key, b.end_key, b.rows_done, b.rows_total",
						 job.key, job.source, job.source, quote_literal_cstr(job.source));
		backfill_exec(sql.data, 2, types, values, NULL, SPI_OK_INSERT_RETURNING);
		last_key = backfill_getstr(1);
		end_key = backfill_getstr(2);
		rows_done = pg_strtoint64(backfill_getstr(3));
		rows_total = pg_strtoint64(backfill_getstr(4));
		pfree(sql.data);
	}
	SPI_commit();

	complete = (end_key == NULL) ||
		(last_key != NULL && strcmp(last_key, end_key) == 0);

	while (!complete && (max_batches < 0 || batches < max_batches))
	{
		volatile int attempt = 0;
		volatile bool safe_copy = false;
		volatile bool anti_join = anti_join_batches > 0;
		char	   *volatile hi = NULL;
		volatile int64 copied = 0;
		volatile int64 scanned = 0;
		volatile bool full_batch = false;

		MemoryContextReset(batchcxt);
		for (;;)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(batchcxt);
			ResourceOwner oldowner = CurrentResourceOwner;
			volatile bool retry = false;
			volatile int retry_wait_ms = 0;

			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(batchcxt);
			PG_TRY();
			{
				Datum		values[3];
				char		nulls[3] = {' ', ' ', ' '};
				int			rc;

				backfill_local_settings(lock_timeout_ms);
				/*
				 * The plans are prepared once, while the target is still
				 * small: keep the planner on index range scans and a nested
				 * loop anti-join however the target grows.
				 */
				backfill_exec("SELECT pg_catalog.set_config('enable_seqscan', 'off', true), "
							  "pg_catalog.set_config('enable_hashjoin', 'off', true), "
							  "pg_catalog.set_config('enable_mergejoin', 'off', true)",
							  0, NULL, NULL, NULL, SPI_OK_SELECT);
				SPI_freetuptable(SPI_tuptable);
				backfill_check_state(&job);

				values[0] = last_key ? CStringGetTextDatum(last_key) : (Datum) 0;
				nulls[0] = last_key ? ' ' : 'n';
				values[1] = CStringGetTextDatum(end_key);
				if (!safe_copy)
				{
					/* one statement: copy the next batch, return its last key */
					values[2] = Int64GetDatum((int64) batch_size);
					cu_sync_guard_depth++;
					PG_TRY();
					{
						rc = SPI_execute_plan(anti_join ? (last_key ? job.fast_next : job.fast_first)
											  : (last_key ? job.plain_next : job.plain_first),
											  values, nulls, false, 0);
					}
					PG_FINALLY();
					{
						cu_sync_guard_depth--;
					}
					PG_END_TRY();
					if (rc != SPI_OK_SELECT || SPI_processed != 1)
						elog(ERROR, "customer_unify: backfill copy failed: %s", SPI_result_code_string(rc));
					copied = pg_strtoint64(backfill_getstr(2));
					/* fewer rows than asked for: the range is exhausted */
					hi = copied < batch_size ? pstrdup(end_key) : backfill_getstr(1);
					SPI_freetuptable(SPI_tuptable);
					scanned = copied;
				}
				else
				{
					/* after a race with a trigger: probe the batch's end, copy with ON CONFLICT */
					values[2] = Int64GetDatum((int64) batch_size - 1);
					rc = SPI_execute_plan(last_key ? job.bound_next : job.bound_first, values, nulls, false, 1);
					if (rc != SPI_OK_SELECT)
						elog(ERROR, "customer_unify: backfill bound query failed: %s", SPI_result_code_string(rc));
					full_batch = SPI_processed > 0;
					hi = full_batch ? backfill_getstr(1) : pstrdup(end_key);
					SPI_freetuptable(SPI_tuptable);

					values[1] = CStringGetTextDatum(hi);
					cu_sync_guard_depth++;
					PG_TRY();
					{
						rc = SPI_execute_plan(last_key ? job.copy_next_safe : job.copy_first_safe,
											  values, nulls, false, 0);
					}
					PG_FINALLY();
					{
						cu_sync_guard_depth--;
					}
					PG_END_TRY();
					if (rc != SPI_OK_INSERT)
						elog(ERROR, "customer_unify: backfill copy failed: %s", SPI_result_code_string(rc));
					copied = (int64) SPI_processed;
					scanned = full_batch ? batch_size : copied;
				}

				values[0] = Int64GetDatum(job.migration_id);
				values[1] = CStringGetTextDatum(hi);
				values[2] = Int64GetDatum(scanned);
				nulls[0] = ' ';
				rc = SPI_execute_plan(job.checkpoint, values, nulls, false, 0);
				if (rc != SPI_OK_UPDATE || SPI_processed != 1)
					elog(ERROR, "customer_unify: backfill checkpoint failed");

				ReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(oldcxt);
				CurrentResourceOwner = oldowner;
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(batchcxt);
				edata = CopyErrorData();
				FlushErrorState();
				RollbackAndReleaseCurrentSubTransaction();
				MemoryContextSwitchTo(oldcxt);
				CurrentResourceOwner = oldowner;

				/*
				 * Decide here, act after PG_END_TRY: a continue inside
				 * PG_CATCH would only leave the macro's do-while.
				 */
				if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && !anti_join)
				{
					/* the range holds rows a sync trigger mirrored: skip them */
					anti_join = true;
					anti_join_batches = BACKFILL_ANTI_JOIN_BATCHES;
					retry_wait_ms = 0;
				}
				else if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && !safe_copy)
				{
					/* a sync trigger mirrored a row of this range meanwhile */
					safe_copy = true;
					retry_wait_ms = 0;
				}
				else if ((edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
						  edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED) &&
						 ++attempt <= BACKFILL_MAX_LOCK_RETRIES)
				{
					ereport(DEBUG1,
							(errmsg("backfill \"%s\": lock timeout, retry %d", job.name, attempt)));
					/* back off: 50 ms doubling up to 5 s, with jitter */
					retry_wait_ms = (int) (Min(5000, 50 << Min(attempt, 7)) *
										   (0.5 + 0.5 * ((double) (random() % 1000) / 1000.0)));
				}
				else
					ReThrowError(edata);
				FreeErrorData(edata);
				retry = true;
			}
			PG_END_TRY();
			if (!retry)
				break;
			backfill_wait_ms(retry_wait_ms);
		}

		SPI_commit();
		backfill_local_settings(lock_timeout_ms);

		/* hi lives in batchcxt: keep the checkpoint in the job's context */
		{
			MemoryContext old = MemoryContextSwitchTo(jobcxt);

			if (last_key)
				pfree(last_key);
			last_key = pstrdup(hi);
			MemoryContextSwitchTo(old);
		}
		batches++;
		if (anti_join_batches > 0)
			anti_join_batches--;
		run_rows += scanned;
		rows_done += scanned;
		rows_copied += copied;
		complete = strcmp(last_key, end_key) == 0;

		if (TimestampDifferenceExceeds(last_notice, GetCurrentTimestamp(), BACKFILL_NOTICE_INTERVAL_MS))
		{
			long		secs;
			int			usecs;
			double		elapsed;

			last_notice = GetCurrentTimestamp();
			TimestampDifference(run_start, last_notice, &secs, &usecs);
			elapsed = secs + usecs / 1e6;
			ereport(NOTICE,
					(errmsg("backfill \"%s\": %lld of ~%lld rows (%.1f%%), %.0f rows/s",
							job.name, (long long) rows_done, (long long) Max(rows_total, rows_done),
							100.0 * rows_done / Max(1, Max(rows_total, rows_done)),
							elapsed > 0 ? run_rows / elapsed : 0.0)));
		}
		if (!complete && sleep_ms > 0)
			backfill_wait_ms(sleep_ms);
		CHECK_FOR_INTERRUPTS();
	}

	if (complete)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(job.migration_id)};

		/*
		 * Add the link foreign key NOT VALID (after removing rows a racing
		 * delete orphaned), commit, then validate it in one pass and mark
		 * the migration backfilled: the short ACCESS-blocking lock of the
		 * ALTER is never held while the validation scans.
		 */
		backfill_exec("SELECT customer_unify._backfill_complete($1, 'backfill_end')", 1, types, values, NULL, SPI_OK_SELECT);
		SPI_commit();
		backfill_local_settings(lock_timeout_ms);
		backfill_exec("SELECT customer_unify._backfill_complete($1, 'validate')", 1, types, values, NULL, SPI_OK_SELECT);
		SPI_commit();
		ereport(NOTICE,
				(errmsg("backfill \"%s\" complete: %lld rows copied in this call",
						job.name, (long long) rows_copied)));
	}
	else
		ereport(NOTICE,
				(errmsg("backfill \"%s\" paused after %lld batches at key %s; call it again to resume",
						job.name, (long long) batches, last_key ? last_key : "(none)")));

	SPI_finish();
	PG_RETURN_VOID();
}
