/*-------------------------------------------------------------------------
 * backfill.c
 *	  The batch copy engine: CALL customer_unify.backfill(name, ...).
 *
 *	  A C procedure on a non-atomic SPI connection (as PL/pgSQL runs
 *	  procedures that COMMIT).  For each copy stream of the migration
 *	  (customer_unify.backfill_state: its plan and checkpoint) it copies the
 *	  source's existing rows into the target in key order ("keyset"
 *	  batches): per batch one INSERT ... SELECT copies the next batch_size
 *	  keys not yet copied and returns the last one, the checkpoint is
 *	  updated in the same transaction, which is then committed.  A cancel,
 *	  crash or restart loses at most the batch in flight; the next call
 *	  resumes after the last committed key.
 *
 *	  Keys are compared with the operators of the source's primary key
 *	  (keys.c), passed as typed parameters, and kept in the checkpoint in
 *	  the type's binary form, so no setting that changes a type's text form
 *	  (DateStyle, ...) and no operator found by search_path can make a
 *	  batch skip or repeat rows.  The copy runs as the source's owner with
 *	  row-level security not applied: it copies every row, whoever calls it.
 *
 *	  Rows written concurrently are the sync triggers' business: their
 *	  writes win over the copy (a batch that meets a mirrored row is redone
 *	  with an anti-join, and after a race with ON CONFLICT DO NOTHING).  A
 *	  delete can remove a source row a batch has just copied from its
 *	  snapshot; once every batch is in, the end phase (engine.c) locks the
 *	  source and adds the link foreign key NOT VALID, whose cascades keep
 *	  the tables 1:1 from then on, and validating it finds any such orphan.
 *
 *	  Each batch runs in a subtransaction under lock_timeout; on a lock
 *	  timeout or a deadlock it backs off and retries.  Two backfills of one
 *	  migration at once are refused (a session advisory lock).  Statements
 *	  are prepared once per call and freed at its end; per-batch memory
 *	  lives in a context reset every batch.
 *
 *	  A 1.0 catalog (1.0's SQL with this library, before ALTER EXTENSION
 *	  UPDATE) keeps the checkpoint as text in backfill_state.last_key and is
 *	  served by the same loop (cu_backfill).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "customer_unify.h"

#define BACKFILL_MAX_LOCK_RETRIES	50
#define BACKFILL_ANTI_JOIN_BATCHES	16	/* after a batch met a mirrored row */
#define BACKFILL_NOTICE_INTERVAL_MS	5000
#define BACKFILL_LOCK_CLASS			0x43550001	/* advisory lock space: "CU", backfill */

/* Set by a background job's worker (jobs.c): called between batches. */
cu_batch_hook_type cu_batch_hook = NULL;

typedef enum CopyVariant
{
	COPY_PLAIN,
	COPY_ANTI_JOIN,
	COPY_SAFE
} CopyVariant;

typedef struct CopyJob
{
	int64		migration_id;
	char	   *name;
	char	   *stream;
	bool		legacy;			/* 1.0 catalog */
	bool		statement;		/* the plan brings its own batch statements */
	Oid			source_relid;
	Oid			target_relid;
	Oid			owner;
	CuKeyType	key;
	/* [variant][first batch?] */
	SPIPlanPtr	copy[3][2];
	SPIPlanPtr	bound[2];
	SPIPlanPtr	end;
	SPIPlanPtr	checkpoint;
	SPIPlanPtr	state;
	List	   *plans;
} CopyJob;

typedef struct CopyColumns
{
	const char *key;
	const char *link;
	int			ncols;
	const char **from;
	const char **to;
	/* or the operation's own batch statements (first batch, later ones) */
	const char *batch_first;
	const char *batch;
} CopyColumns;

static SPIPlanPtr
backfill_prepare(CopyJob *job, const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = cu_prepare_keep(sql, nargs, types);
	MemoryContext old;

	old = MemoryContextSwitchTo(TopMemoryContext);
	job->plans = lappend(job->plans, plan);
	MemoryContextSwitchTo(old);
	return plan;
}

static void
backfill_free_plans(CopyJob *job)
{
	ListCell   *lc;

	foreach(lc, job->plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	list_free(job->plans);
	job->plans = NIL;
}

/* Transaction-local settings for each transaction the procedure opens. */
static void
backfill_local_settings(int lock_timeout_ms)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", lock_timeout_ms);
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	/*
	 * synchronous_commit off is safe here: the checkpoint commits with its
	 * batch, so a batch lost in a crash is simply copied again.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	/*
	 * The plans are prepared once, while the target is still small: keep the
	 * planner on index range scans and a nested loop anti-join however the
	 * target grows.
	 */
	/* (their costs, inflated by the settings below, would JIT-compile every batch) */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	/* keys written as text (a merge's crosswalk) read the same in every session */
	(void) set_config_option("DateStyle", "ISO, MDY", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * The copy statement of a batch, variant v, first batch or not.  Parameters:
 * $1 the last key copied (not for the first batch), $2 the last key of the
 * copy, $3 the batch size.  "k <= $2" is written "NOT (k > $2)": the key's
 * operator family's own operators only.
 */
static char *
backfill_copy_sql(const char *source, const char *target, const char *key, const char *link,
				  const char *cols, const char *scols, CuKeyType *kt, CopyVariant v, bool first)
{
	StringInfoData buf,
				sql;

	initStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s (%s%s) SELECT s.%s%s FROM ONLY %s s WHERE ",
					 target, link, cols, key, scols, source);
	if (!first)
		appendStringInfo(&buf, "s.%s %s $1 AND ", key, kt->gt);
	appendStringInfo(&buf, "NOT (s.%s %s $2)", key, kt->gt);
	if (v == COPY_ANTI_JOIN)
		appendStringInfo(&buf, " AND NOT EXISTS (SELECT 1 FROM ONLY %s t WHERE t.%s %s s.%s)",
						 target, link, kt->eq, key);
	if (v == COPY_SAFE)
	{
		appendStringInfo(&buf, " ON CONFLICT (%s) DO NOTHING", link);
		return buf.data;
	}

	/*
	 * The usual path: the next batch_size rows not yet in the target, in key
	 * order, and the last key copied.  Rows skipped because a trigger
	 * mirrored them lie below that key, so the checkpoint stays exact.
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH ins AS (%s ORDER BY s.%s USING %s LIMIT $3 RETURNING %s) "
					 "SELECT (SELECT i.%s FROM ins i ORDER BY i.%s USING %s LIMIT 1), "
					 "(SELECT pg_catalog.count(*) FROM ins)",
					 buf.data, key, kt->lt, link, link, link, kt->gt);
	pfree(buf.data);
	return sql.data;
}

static void
backfill_column_lists(CopyColumns *cc, StringInfo cols, StringInfo scols)
{
	int			i;

	initStringInfo(cols);
	initStringInfo(scols);
	for (i = 0; i < cc->ncols; i++)
	{
		appendStringInfo(cols, ", %s", quote_identifier(cc->to[i]));
		appendStringInfo(scols, ", s.%s", quote_identifier(cc->from[i]));
	}
}

/*
 * The statements of one copy stream, built from the catalog: relations by
 * OID, column names checked against them, keys compared with the source
 * primary key's operators.
 */
static void backfill_build_statements(CopyJob *job, CopyColumns *cc);

static void
backfill_build(CopyJob *job, CopyColumns *cc)
{
	Relation	src;
	Relation	tgt;
	const char *source;
	const char *target;
	const char *key;
	const char *link;
	StringInfoData cols,
				scols,
				sql;
	Oid			types[3];
	int			i,
				v,
				first;

	if (job->statement)
	{
		backfill_build_statements(job, cc);
		return;
	}
	src = table_open(job->source_relid, AccessShareLock);
	tgt = table_open(job->target_relid, AccessShareLock);
	source = cu_relation_qualified_name(job->source_relid);
	target = cu_relation_qualified_name(job->target_relid);
	key = quote_identifier(cc->key);
	link = quote_identifier(cc->link);
	cu_key_type_for_column(src, cu_attnum_or_error(src, cc->key), &job->key);
	(void) cu_attnum_or_error(tgt, cc->link);
	job->owner = src->rd_rel->relowner;
	for (i = 0; i < cc->ncols; i++)
	{
		(void) cu_attnum_or_error(src, cc->from[i]);
		(void) cu_attnum_or_error(tgt, cc->to[i]);
	}
	table_close(tgt, AccessShareLock);
	table_close(src, AccessShareLock);
	backfill_column_lists(cc, &cols, &scols);

	types[0] = job->key.type;
	types[1] = job->key.type;
	types[2] = INT8OID;
	initStringInfo(&sql);

	/* the last key of the copy, fixed at the first call */
	appendStringInfo(&sql, "SELECT s.%s FROM ONLY %s s ORDER BY s.%s USING %s LIMIT 1",
					 key, source, key, job->key.gt);
	job->end = backfill_prepare(job, sql.data, 0, NULL);

	for (first = 0; first < 2; first++)
	{
		/* a batch's last key, for the ON CONFLICT variant */
		resetStringInfo(&sql);
		appendStringInfo(&sql, "SELECT s.%s FROM ONLY %s s WHERE ", key, source);
		if (!first)
			appendStringInfo(&sql, "s.%s %s $1 AND ", key, job->key.gt);
		appendStringInfo(&sql, "NOT (s.%s %s $2) ORDER BY s.%s USING %s OFFSET $3 LIMIT 1",
						 key, job->key.gt, key, job->key.lt);
		job->bound[first] = backfill_prepare(job, sql.data, 3, types);

		for (v = COPY_PLAIN; v <= COPY_SAFE; v++)
			job->copy[v][first] = backfill_prepare(job, backfill_copy_sql(source, target, key, link, cols.data,
																		   scols.data, &job->key, v, first),
												   3, types);
	}
	pfree(sql.data);
}

/*
 * A stream whose plan brings its batch statements (an operation's copy that
 * is not a plain INSERT ... SELECT, e.g. merge's matching): they take the
 * same parameters and return the same row as the built-in copy, ($1 the
 * last key done, not for the first batch; $2 the copy's last key; $3 the
 * batch size) -> (last key of the batch, rows done), and the engine keeps
 * the checkpoint, the commits, the retries and the end key as for a copy.
 * The statements were generated by the operation at start from the
 * catalog (relations by OID, quoted) and are stored in the catalog, which
 * only the engine writes.
 */
static void
backfill_build_statements(CopyJob *job, CopyColumns *cc)
{
	Relation	src = table_open(job->source_relid, AccessShareLock);
	const char *source = cu_relation_qualified_name(job->source_relid);
	const char *key = quote_identifier(cc->key);
	Oid			types[3];
	int			v;

	cu_key_type_for_column(src, cu_attnum_or_error(src, cc->key), &job->key);
	job->owner = src->rd_rel->relowner;
	table_close(src, AccessShareLock);
	types[0] = job->key.type;
	types[1] = job->key.type;
	types[2] = INT8OID;
	job->end = backfill_prepare(job, psprintf("SELECT s.%s FROM ONLY %s s ORDER BY s.%s USING %s LIMIT 1",
											  key, source, key, job->key.gt), 0, NULL);
	for (v = COPY_PLAIN; v <= COPY_SAFE; v++)
	{
		job->copy[v][1] = backfill_prepare(job, cc->batch_first, 3, types);
		job->copy[v][0] = backfill_prepare(job, cc->batch, 3, types);
	}
	job->bound[0] = job->bound[1] = NULL;
}

static char *
plan_string(Jsonb *plan, const char *name)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(&plan->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("copy plan has no \"%s\"", name)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

PG_FUNCTION_INFO_V1(cu_copy_statement);

/*
 * customer_unify._copy_statement(plan jsonb): the statement a batch runs,
 * for preview.  plan: {source (oid), target_name (qualified), key, link,
 * columns: [[from, to], ...]}; the target need not exist yet.
 */
Datum
cu_copy_statement(PG_FUNCTION_ARGS)
{
	Jsonb	   *plan = PG_GETARG_JSONB_P(0);
	CopyColumns cc = {0};
	StringInfoData cols,
				scols;
	CuKeyType	kt;
	Oid			source;
	Relation	src;
	JsonbValue	k;
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	List	   *names = NIL;
	int			i;
	char	   *result;

	source = (Oid) strtoul(plan_string(plan, "source"), NULL, 10);
	cc.key = plan_string(plan, "key");
	cc.link = plan_string(plan, "link");
	k.type = jbvString;
	k.val.string.val = "columns";
	k.val.string.len = 7;
	v = findJsonbValueFromContainer(&plan->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvBinary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("copy plan has no \"columns\"")));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, false)) != WJB_DONE)
		if (tok == WJB_ELEM && e.type == jbvString)
			names = lappend(names, pnstrdup(e.val.string.val, e.val.string.len));
	cc.ncols = list_length(names) / 2;
	cc.from = palloc(sizeof(char *) * Max(1, cc.ncols));
	cc.to = palloc(sizeof(char *) * Max(1, cc.ncols));
	for (i = 0; i < cc.ncols; i++)
	{
		cc.from[i] = list_nth(names, 2 * i);
		cc.to[i] = list_nth(names, 2 * i + 1);
	}
	src = table_open(source, AccessShareLock);
	cu_key_type_for_column(src, cu_attnum_or_error(src, cc.key), &kt);
	table_close(src, AccessShareLock);
	backfill_column_lists(&cc, &cols, &scols);
	result = backfill_copy_sql(cu_relation_qualified_name(source), plan_string(plan, "target_name"),
							   quote_identifier(cc.key), quote_identifier(cc.link), cols.data, scols.data,
							   &kt, COPY_PLAIN, false);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

static char *
backfill_getstr(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

static void
backfill_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "customer_unify: backfill statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* Stop with a clear error if the migration was rolled back (or moved on) meanwhile. */
static void
backfill_check_state(CopyJob *job)
{
	Datum		values[1] = {Int64GetDatum(job->migration_id)};
	char	   *state;
	int			rc = SPI_execute_plan(job->state, values, NULL, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the migration's state failed");
	state = SPI_processed > 0 ? backfill_getstr(1) : pstrdup("(dropped)");
	if (strcmp(state, "started") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backfill of migration \"%s\" stopped: the migration is now %s", job->name, state),
				 errdetail("Another session changed the migration while the backfill ran.")));
}

/* ----------------------------------------------------- the migration */

/* state, may-act, source, ... of a migration; false when it is already backfilled */
static bool
backfill_check_migration(const char *name, const char *state)
{
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
	return true;
}

/* The migration's streams (1.1 catalog). */
static List *
backfill_streams(int64 migration_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(migration_id)};
	List	   *streams = NIL;
	uint64		i;

	backfill_exec("SELECT b.stream FROM customer_unify.backfill_state b "
				  "WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.finished_at IS NULL ORDER BY b.stream",
				  1, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		streams = lappend(streams, MemoryContextStrdup(TopMemoryContext,
													   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)));
	return streams;
}

/*
 * Load one stream: its plan (jsonb: source, target oids; key, link; columns
 * [[from, to], ...]) and checkpoint.  *pos and *end are set from the
 * checkpoint (NULL pos: nothing copied yet).
 */
static void
backfill_load_stream(CopyJob *job, MemoryContext jobcxt, Datum *pos, bool *haspos, Datum *end,
					 bool *hasend, int64 *rows_done, int64 *rows_total)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(job->migration_id), CStringGetTextDatum(job->stream)};
	CopyColumns cc = {0};
	bool		isnull;
	Datum		d;
	MemoryContext old;
	int			i;

	backfill_exec("SELECT customer_unify._relation(b.migration_id, b.plan->>'source_tag')::pg_catalog.oid, "
				  "customer_unify._relation(b.migration_id, b.plan->>'target_tag')::pg_catalog.oid, "
				  "b.plan->>'key', b.plan->>'link', "
				  "ARRAY(SELECT c->>0 FROM pg_catalog.jsonb_array_elements(b.plan->'columns') c), "
				  "ARRAY(SELECT c->>1 FROM pg_catalog.jsonb_array_elements(b.plan->'columns') c), "
				  "b.position, b.end_position, b.rows_done, b.rows_total, "
				  "b.plan->>'batch_first', b.plan->>'batch' "
				  "FROM customer_unify.backfill_state b "
				  "WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
				  2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("copy stream \"%s\" of migration \"%s\" has no plan", job->stream, job->name)));
	cc.batch_first = backfill_getstr(11);
	cc.batch = backfill_getstr(12);
	job->statement = cc.batch != NULL && cc.batch_first != NULL;
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull || (!job->statement && (SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull), isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("a table of copy stream \"%s\" of migration \"%s\" does not exist", job->stream, job->name),
				 errhint("The migration's tables were changed outside customer_unify; roll the migration back.")));
	old = MemoryContextSwitchTo(jobcxt);
	job->source_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	job->target_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		job->target_relid = InvalidOid;
	cc.key = backfill_getstr(3);
	if (cc.batch != NULL)
		cc.batch = MemoryContextStrdup(jobcxt, cc.batch);
	if (cc.batch_first != NULL)
		cc.batch_first = MemoryContextStrdup(jobcxt, cc.batch_first);
	cc.link = backfill_getstr(4);
	{
		ArrayType  *fa = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
		ArrayType  *ta = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
		Datum	   *fe,
				   *te;
		int			nf,
					nt;

		deconstruct_array(fa, TEXTOID, -1, false, TYPALIGN_INT, &fe, NULL, &nf);
		deconstruct_array(ta, TEXTOID, -1, false, TYPALIGN_INT, &te, NULL, &nt);
		cc.ncols = nf;
		cc.from = palloc(sizeof(char *) * Max(1, nf));
		cc.to = palloc(sizeof(char *) * Max(1, nf));
		for (i = 0; i < nf; i++)
		{
			cc.from[i] = TextDatumGetCString(fe[i]);
			cc.to[i] = TextDatumGetCString(te[i]);
		}
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, haspos);
	*haspos = !*haspos;
	if (*haspos)
		d = PointerGetDatum(DatumGetByteaPCopy(d));
	*pos = d;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, hasend);
	*hasend = !*hasend;
	if (*hasend)
		d = PointerGetDatum(DatumGetByteaPCopy(d));
	*end = d;
	*rows_done = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 9, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 10, &isnull);
	*rows_total = isnull ? -1 : DatumGetInt64(d);
	MemoryContextSwitchTo(old);

	backfill_build(job, &cc);
	/* binary checkpoints back to keys */
	old = MemoryContextSwitchTo(jobcxt);
	if (*haspos)
		*pos = cu_key_from_binary(&job->key, DatumGetByteaPP(*pos));
	if (*hasend)
		*end = cu_key_from_binary(&job->key, DatumGetByteaPP(*end));
	MemoryContextSwitchTo(old);
	{
		Oid			ctypes[6] = {INT8OID, TEXTOID, BYTEAOID, TEXTOID, INT8OID, INT8OID};

		job->checkpoint = backfill_prepare(job,
										   "UPDATE customer_unify.backfill_state b SET position = $3, last_key = $4, "
										   "rows_done = b.rows_done OPERATOR(pg_catalog.+) $5, "
										   "run_rows = b.run_rows OPERATOR(pg_catalog.+) $5, "
										   "batches = b.batches OPERATOR(pg_catalog.+) 1, "
										   "retries = b.retries OPERATOR(pg_catalog.+) $6, "
										   "updated_at = pg_catalog.clock_timestamp() "
										   "WHERE b.migration_id OPERATOR(pg_catalog.=) $1 "
										   "AND b.stream OPERATOR(pg_catalog.=) $2",
										   6, ctypes);
	}
}

/* 1.0 catalog: the spec names the tables and columns; the checkpoint is text. */
static void
backfill_load_legacy(CopyJob *job, MemoryContext jobcxt, Datum *pos, bool *haspos, Datum *end,
					 bool *hasend, int64 *rows_done, int64 *rows_total)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job->migration_id)};
	CopyColumns cc = {0};
	char	   *last_key,
			   *end_key;
	uint64		i;
	MemoryContext old = MemoryContextSwitchTo(jobcxt);

	backfill_exec("SELECT m.spec->>'source_schema', m.spec->>'source_table', m.spec->>'key_column', "
				  "m.spec->>'target_schema', m.spec->>'target_table', m.spec->>'link_column' "
				  "FROM customer_unify.migration m WHERE m.id OPERATOR(pg_catalog.=) $1",
				  1, types, values, NULL, SPI_OK_SELECT);
	job->source_relid = cu_relid_or_error(backfill_getstr(1), backfill_getstr(2));
	cc.key = backfill_getstr(3);
	job->target_relid = cu_relid_or_error(backfill_getstr(4), backfill_getstr(5));
	cc.link = backfill_getstr(6);
	backfill_exec("SELECT c FROM customer_unify.migration m, "
				  "pg_catalog.jsonb_array_elements_text(m.spec->'columns') WITH ORDINALITY x(c, n) "
				  "WHERE m.id OPERATOR(pg_catalog.=) $1 ORDER BY n",
				  1, types, values, NULL, SPI_OK_SELECT);
	cc.ncols = (int) SPI_processed;
	cc.from = palloc(sizeof(char *) * Max(1, cc.ncols));
	cc.to = cc.from;
	for (i = 0; i < SPI_processed; i++)
		cc.from[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	MemoryContextSwitchTo(old);

	backfill_build(job, &cc);

	{
		Oid			t2[2] = {INT8OID, OIDOID};
		Datum		v2[2] = {Int64GetDatum(job->migration_id), ObjectIdGetDatum(job->source_relid)};

		backfill_exec("INSERT INTO customer_unify.backfill_state AS b "
					  "(migration_id, rows_total, started_at, run_started_at, updated_at) "
					  "SELECT $1, CASE WHEN c.reltuples OPERATOR(pg_catalog.<) 0 THEN 0 "
					  "ELSE c.reltuples::pg_catalog.int8 END, pg_catalog.clock_timestamp(), "
					  "pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp() "
					  "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $2 "
					  "ON CONFLICT (migration_id) DO UPDATE SET run_started_at = pg_catalog.clock_timestamp(), "
					  "run_rows = 0 RETURNING b.last_key, b.end_key, b.rows_done, b.rows_total",
					  2, t2, v2, NULL, SPI_OK_INSERT_RETURNING);
	}
	old = MemoryContextSwitchTo(jobcxt);
	last_key = backfill_getstr(1);
	end_key = backfill_getstr(2);
	*rows_done = pg_strtoint64(backfill_getstr(3));
	*rows_total = pg_strtoint64(backfill_getstr(4));
	*haspos = last_key != NULL;
	*hasend = end_key != NULL;
	{
		Oid			infunc,
					ioparam;

		getTypeInputInfo(job->key.type, &infunc, &ioparam);
		if (*haspos)
			*pos = OidInputFunctionCall(infunc, last_key, ioparam, -1);
		if (*hasend)
			*end = OidInputFunctionCall(infunc, end_key, ioparam, -1);
	}
	MemoryContextSwitchTo(old);
	{
		Oid			ctypes[6] = {INT8OID, TEXTOID, BYTEAOID, TEXTOID, INT8OID, INT8OID};

		/* 1.0 keeps no stream and no binary position */
		job->checkpoint = backfill_prepare(job,
										   "UPDATE customer_unify.backfill_state b SET last_key = $4, "
										   "rows_done = b.rows_done OPERATOR(pg_catalog.+) $5, "
										   "run_rows = b.run_rows OPERATOR(pg_catalog.+) $5, "
										   "batches = b.batches OPERATOR(pg_catalog.+) 1, "
										   "retries = b.retries OPERATOR(pg_catalog.+) $6, "
										   "updated_at = pg_catalog.clock_timestamp() "
										   "WHERE b.migration_id OPERATOR(pg_catalog.=) $1",
										   6, ctypes);
	}
}

/* The copy's last key, fixed at the first call of a stream. */
static void
backfill_save_end(CopyJob *job, Datum end, bool hasend)
{
	if (job->legacy)
	{
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		values[2] = {Int64GetDatum(job->migration_id),
		hasend ? CStringGetTextDatum(cu_key_to_text(&job->key, end)) : (Datum) 0};
		char		nulls[3] = {' ', hasend ? ' ' : 'n', '\0'};

		backfill_exec("UPDATE customer_unify.backfill_state b SET end_key = $2 "
					  "WHERE b.migration_id OPERATOR(pg_catalog.=) $1",
					  2, types, values, nulls, SPI_OK_UPDATE);
	}
	else
	{
		Oid			types[4] = {INT8OID, TEXTOID, BYTEAOID, TEXTOID};
		Datum		values[4] = {Int64GetDatum(job->migration_id), CStringGetTextDatum(job->stream),
			hasend ? PointerGetDatum(cu_key_to_binary(&job->key, end)) : (Datum) 0,
		hasend ? CStringGetTextDatum(cu_key_to_text(&job->key, end)) : (Datum) 0};
		char		nulls[5] = {' ', ' ', hasend ? ' ' : 'n', hasend ? ' ' : 'n', '\0'};

		cu_catalog_exec("UPDATE customer_unify.backfill_state b SET end_position = $3, end_key = $4 "
						"WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
						4, types, values, nulls, SPI_OK_UPDATE);
	}
}

/* The start of a call: counters of this run, batch size. */
static void
backfill_begin_run(CopyJob *job, int batch_size)
{
	Oid			types[3] = {INT8OID, TEXTOID, INT4OID};
	Datum		values[3] = {Int64GetDatum(job->migration_id), CStringGetTextDatum(job->stream),
	Int32GetDatum(batch_size)};

	if (job->legacy)
		return;					/* done by backfill_load_legacy */
	cu_catalog_exec("UPDATE customer_unify.backfill_state b SET batch_size = $3, "
					"run_started_at = pg_catalog.clock_timestamp(), run_rows = 0, "
					"started_at = COALESCE(b.started_at, pg_catalog.clock_timestamp()), "
					"updated_at = pg_catalog.clock_timestamp(), "
					"rows_total = COALESCE(b.rows_total, (SELECT CASE WHEN c.reltuples OPERATOR(pg_catalog.<) 0 THEN NULL "
					"  ELSE c.reltuples::pg_catalog.int8 END FROM pg_catalog.pg_class c "
					"  WHERE c.oid OPERATOR(pg_catalog.=) customer_unify._relation(b.migration_id, b.plan->>'source_tag')::pg_catalog.oid)) "
					"WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
					3, types, values, NULL, SPI_OK_UPDATE);
}

static void
backfill_checkpoint(CopyJob *job, Datum hi, int64 scanned, int64 retries)
{
	Datum		values[6];
	char		nulls[7] = "      ";
	int			rc;

	values[0] = Int64GetDatum(job->migration_id);
	values[1] = CStringGetTextDatum(job->stream);
	if (job->legacy)
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	else
		values[2] = PointerGetDatum(cu_key_to_binary(&job->key, hi));
	values[3] = CStringGetTextDatum(cu_key_to_text(&job->key, hi));
	values[4] = Int64GetDatum(scanned);
	values[5] = Int64GetDatum(retries);
	rc = cu_spi_as(job->legacy ? InvalidOid : cu_extension_owner(), false, NULL, job->checkpoint,
				   6, NULL, values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "customer_unify: backfill checkpoint failed");
}

static void
backfill_finish_stream(CopyJob *job)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(job->migration_id), CStringGetTextDatum(job->stream)};

	if (job->legacy)
		return;
	cu_catalog_exec("UPDATE customer_unify.backfill_state b SET finished_at = pg_catalog.clock_timestamp() "
					"WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
					2, types, values, NULL, SPI_OK_UPDATE);
}

/* Datum copy of a key into cxt */
static Datum
backfill_copy_key(CopyJob *job, Datum key, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum		result = datumCopy(key, job->key.byval, job->key.len);

	MemoryContextSwitchTo(old);
	return result;
}

/*
 * A stream whose statements join tables an earlier stream just filled (a
 * merge's matching reads the match keys and the crosswalk the previous
 * passes wrote) first refreshes their statistics, so that its plans see
 * them as they are: plan->'analyze' lists them, the catalog's as the
 * extension's owner and the others as the tables' owner.
 */
static void
backfill_analyze(CopyJob *job)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(job->migration_id), CStringGetTextDatum(job->stream)};
	uint64		i;
	List	   *rels = NIL;
	ListCell   *lc;

	backfill_exec("SELECT c.oid, c.relnamespace OPERATOR(pg_catalog.=) 'customer_unify'::pg_catalog.regnamespace "
				  "FROM customer_unify.backfill_state b, pg_catalog.jsonb_array_elements_text(b.plan->'analyze') a(rel) "
				  "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(a.rel) "
				  "WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
				  2, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		bool		catalog = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		rels = lappend_oid(rels, catalog ? relid : InvalidOid);
		rels = lappend_oid(rels, relid);
	}
	for (lc = list_head(rels); lc != NULL; lc = lnext(rels, lnext(rels, lc)))
	{
		Oid			catalog_rel = lfirst_oid(lc);
		Oid			relid = lfirst_oid(lnext(rels, lc));
		char	   *sql = psprintf("ANALYZE %s", cu_relation_qualified_name(relid));

		if (OidIsValid(catalog_rel))
			cu_catalog_exec(sql, 0, NULL, NULL, NULL, SPI_OK_UTILITY);
		else if (cu_spi_as(cu_relation_owner(relid), true, sql, NULL, 0, NULL, NULL, NULL, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "customer_unify: %s failed", sql);
	}
	list_free(rels);
}

/* Do two keys compare equal with the key's operator? (a type-safe "=") */
static bool
backfill_keys_equal(CopyJob *job, Datum a, Datum b)
{
	/* binary equality is enough to recognize the copy's own end key */
	return datumIsEqual(a, b, job->key.byval, job->key.len);
}

typedef struct BackfillArgs
{
	int32		batch_size;
	int32		max_batches;
	int32		sleep_ms;
	int32		lock_timeout_ms;
} BackfillArgs;

/* One batch of a stream, run in its own subtransaction by backfill_stream */
typedef struct BackfillBatch
{
	CopyJob    *job;
	BackfillArgs *args;
	Datum		pos;			/* last key copied, if haspos */
	bool		haspos;
	Datum		end;			/* the copy's end key */
	CopyVariant variant;		/* plain, anti-join or safe copy */
	MemoryContext cxt;			/* batch context, for hi */
	int64		retries;		/* lock retries so far, for the checkpoint */
	Datum		hi;				/* out: the batch's last key */
	int64		copied;			/* out: rows inserted */
	int64		scanned;		/* out: source rows covered */
} BackfillBatch;

/*
 * Copy the rows after pos up to batch_size or end as the tables' owner,
 * under the migration's loop guard, and checkpoint.  Errors (lock timeouts,
 * a race with a sync trigger) are left to the caller.
 */
static void
backfill_batch(void *arg)
{
	BackfillBatch *b = (BackfillBatch *) arg;
	CopyJob    *job = b->job;
	Datum		values[3];
	char		nulls[4] = "   ";
	int			first = b->haspos ? 0 : 1;
	CuSavedUser save = {0};

	backfill_local_settings(b->args->lock_timeout_ms);
	backfill_check_state(job);

	values[0] = b->haspos ? b->pos : (Datum) 0;
	nulls[0] = b->haspos ? ' ' : 'n';
	values[1] = b->end;
	cu_guard_push(job->migration_id);
	cu_become(job->owner, true, &save);
	PG_TRY();
	{
		int			rc;
		bool		isnull;

		if (b->variant != COPY_SAFE)
		{
			/* one statement: copy the next batch, return its last key */
			values[2] = Int64GetDatum((int64) b->args->batch_size);
			rc = SPI_execute_plan(job->copy[b->variant][first], values, nulls, false, 0);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "customer_unify: backfill copy failed: %s", SPI_result_code_string(rc));
			b->copied = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
			/* fewer rows than asked for: the range is exhausted */
			if (b->copied < b->args->batch_size)
				b->hi = b->end;
			else
				b->hi = backfill_copy_key(job, SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
										  b->cxt);
			b->scanned = b->copied;
		}
		else
		{
			/* after a race with a trigger: probe the batch's end, copy with ON CONFLICT */
			bool		full;

			values[2] = Int64GetDatum((int64) b->args->batch_size - 1);
			rc = SPI_execute_plan(job->bound[first], values, nulls, true, 1);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "customer_unify: backfill bound query failed: %s", SPI_result_code_string(rc));
			full = SPI_processed > 0;
			b->hi = full ? backfill_copy_key(job, SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
											 b->cxt) : b->end;
			values[1] = b->hi;
			rc = SPI_execute_plan(job->copy[COPY_SAFE][first], values, nulls, false, 0);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "customer_unify: backfill copy failed: %s", SPI_result_code_string(rc));
			b->copied = (int64) SPI_processed;
			b->scanned = full ? b->args->batch_size : b->copied;
		}
	}
	PG_FINALLY();
	{
		cu_unbecome(&save);
		cu_guard_pop();
	}
	PG_END_TRY();

	backfill_checkpoint(job, b->hi, b->scanned, b->retries);
}

/*
 * Copy one stream until it is complete or max_batches (counted over the
 * call) are done.  Returns true when the stream is complete.
 */
static bool
backfill_stream(CopyJob *job, BackfillArgs *args, MemoryContext jobcxt, int64 *batches,
				int64 *rows_copied)
{
	MemoryContext batchcxt;
	Datum		pos = (Datum) 0,
				end = (Datum) 0;
	bool		haspos,
				hasend;
	int64		rows_done,
				rows_total,
				run_rows = 0;
	bool		complete;
	int			anti_join_batches = 0;
	int			safe_batches = 0;
	Datum		hi;
	int64		batch_no = 1;
	int64		copied,
				scanned;
	TimestampTz run_start = GetCurrentTimestamp();
	TimestampTz last_notice = run_start;
	TimestampTz batch_start,
				batch_end;
	bool		stop = false;

	if (job->legacy)
		backfill_load_legacy(job, jobcxt, &pos, &haspos, &end, &hasend, &rows_done, &rows_total);
	else
	{
		backfill_begin_run(job, args->batch_size);
		backfill_analyze(job);
		backfill_load_stream(job, jobcxt, &pos, &haspos, &end, &hasend, &rows_done, &rows_total);
	}
	if (!job->legacy && rows_total < 0)
	{
		/* never analyzed: count once, for progress */
		Oid			types[3] = {INT8OID, TEXTOID, INT8OID};
		Datum		values[3];
		int			rc;
		bool		isnull;

		rc = cu_spi_as(job->owner, true,
					   psprintf("SELECT pg_catalog.count(*) FROM ONLY %s",
								cu_relation_qualified_name(job->source_relid)),
					   NULL, 0, NULL, NULL, NULL, true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			rows_total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			values[0] = Int64GetDatum(job->migration_id);
			values[1] = CStringGetTextDatum(job->stream);
			values[2] = Int64GetDatum(rows_total);
			cu_catalog_exec("UPDATE customer_unify.backfill_state b SET rows_total = $3 "
							"WHERE b.migration_id OPERATOR(pg_catalog.=) $1 AND b.stream OPERATOR(pg_catalog.=) $2",
							3, types, values, NULL, SPI_OK_UPDATE);
		}
	}
	if (!hasend)
	{
		/* the copy's end is the last key at the first call: later rows are the triggers' */
		int			rc;

		rc = cu_spi_as(job->owner, true, NULL, job->end, 0, NULL, NULL, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "customer_unify: reading the last key failed");
		if (SPI_processed > 0)
		{
			bool		isnull;

			end = backfill_copy_key(job, SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
									jobcxt);
			hasend = true;
		}
		backfill_save_end(job, end, hasend);
	}
	SPI_commit();
	backfill_local_settings(args->lock_timeout_ms);

	batchcxt = AllocSetContextCreate(jobcxt, "customer_unify backfill batch", ALLOCSET_DEFAULT_SIZES);
	batch_no = 1;
	complete = !hasend || (haspos && backfill_keys_equal(job, pos, end));

	while (!complete && !stop && (args->max_batches < 0 || *batches < args->max_batches))
	{
		BackfillBatch batch = {0};
		int			attempt = 0;

		batch_start = GetCurrentTimestamp();

		batch.job = job;
		batch.args = args;
		batch.pos = pos;
		batch.haspos = haspos;
		batch.end = end;
		/*
		 * A batch that met a mirrored row makes the next ones skip such rows
		 * (anti-join); one that raced a trigger makes them insert with ON
		 * CONFLICT DO NOTHING: under steady writes ahead of the copy a batch
		 * redone costs more than the speculative inserts.
		 */
		batch.variant = safe_batches > 0 ? COPY_SAFE : anti_join_batches > 0 ? COPY_ANTI_JOIN : COPY_PLAIN;
		batch.cxt = batchcxt;
		MemoryContextReset(batchcxt);
		/*
		 * and again before batches 2, 4, 8, ... of this call: what the stream
		 * itself writes (the crosswalk) grows under its plans, which must not
		 * keep working from the statistics of an empty table (O(log n)
		 * ANALYZEs)
		 */
		if (job->statement && batch_no >= 2 && (batch_no & (batch_no - 1)) == 0)
			backfill_analyze(job);
		batch_no++;
		for (;;)
		{
			ErrorData  *edata = cu_subxact(backfill_batch, &batch);
			int			retry_wait_ms = 0;

			if (edata == NULL)
				break;
			if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && job->statement)
				ReThrowError(edata);
			else if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && batch.variant == COPY_PLAIN)
			{
				/* the range holds rows a sync trigger mirrored: skip them */
				batch.variant = COPY_ANTI_JOIN;
				anti_join_batches = BACKFILL_ANTI_JOIN_BATCHES;
			}
			else if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && batch.variant == COPY_ANTI_JOIN)
			{
				/* a sync trigger mirrored a row of this range meanwhile */
				batch.variant = COPY_SAFE;
				safe_batches = BACKFILL_ANTI_JOIN_BATCHES;
			}
			else if (cu_is_lock_error(edata) && ++attempt <= BACKFILL_MAX_LOCK_RETRIES)
			{
				ereport(DEBUG1,
						(errmsg("backfill \"%s\": lock timeout, retry %d", job->name, attempt)));
				batch.retries++;
				/* back off: 50 ms doubling up to 5 s, with jitter */
				retry_wait_ms = cu_backoff_ms(attempt + 1, 5000);
			}
			else
				ReThrowError(edata);
			FreeErrorData(edata);
			cu_sleep_ms(retry_wait_ms);
		}
		hi = batch.hi;
		copied = batch.copied;
		scanned = batch.scanned;

		SPI_commit();
		batch_end = GetCurrentTimestamp();
		backfill_local_settings(args->lock_timeout_ms);

		/* hi lives in batchcxt: keep the checkpoint in the job's context */
		if (haspos && !job->key.byval)
			pfree(DatumGetPointer(pos));
		pos = backfill_copy_key(job, hi, jobcxt);
		haspos = true;
		(*batches)++;
		if (anti_join_batches > 0)
			anti_join_batches--;
		if (safe_batches > 0)
			safe_batches--;
		run_rows += scanned;
		rows_done += scanned;
		*rows_copied += copied;
		complete = backfill_keys_equal(job, pos, end);

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
							job->name, (long long) rows_done, (long long) Max(rows_total, rows_done),
							100.0 * rows_done / Max(1, Max(rows_total, rows_done)),
							elapsed > 0 ? run_rows / elapsed : 0.0)));
		}
		if (!complete && args->sleep_ms > 0)
			cu_sleep_ms(args->sleep_ms);
		if (!complete && cu_batch_hook != NULL)
		{
			/* a background job's pause, cancel and throttling (jobs.c) */
			long		secs;
			int			usecs;

			TimestampDifference(batch_start, batch_end, &secs, &usecs);
			stop = !cu_batch_hook(job->migration_id, secs * 1000.0 + usecs / 1000.0, &args->batch_size);
			backfill_local_settings(args->lock_timeout_ms);
		}
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(batchcxt);
	if (complete)
	{
		backfill_finish_stream(job);
		SPI_commit();
		backfill_local_settings(args->lock_timeout_ms);
	}
	else
		ereport(NOTICE,
				(errmsg("backfill \"%s\" paused after %lld batches at key %s; call it again to resume",
						job->name, (long long) *batches,
						haspos ? cu_key_to_text(&job->key, pos) : "(none)")));
	return complete;
}

static void
backfill_validate(void *migration_id)
{
	cu_run_phase_internal(*(int64 *) migration_id, "validate", NULL);
}

/* The end of the copy: the link foreign key, then its validation (engine.c phases). */
static void
backfill_complete(CopyJob *job, int lock_timeout_ms)
{
	if (job->legacy)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(job->migration_id)};

		backfill_exec("SELECT customer_unify._backfill_complete($1, 'backfill_end')", 1, types, values, NULL, SPI_OK_SELECT);
		SPI_commit();
		backfill_local_settings(lock_timeout_ms);
		backfill_exec("SELECT customer_unify._backfill_complete($1, 'validate')", 1, types, values, NULL, SPI_OK_SELECT);
		SPI_commit();
		return;
	}
	cu_run_phase_internal(job->migration_id, "backfill_end", NULL);
	SPI_commit();
	backfill_local_settings(lock_timeout_ms);
	{
		ErrorData  *edata = cu_subxact(backfill_validate, &job->migration_id);
		bool		orphans = false;

		if (edata != NULL)
		{
			if (edata->sqlerrcode != ERRCODE_FOREIGN_KEY_VIOLATION)
				ReThrowError(edata);
			FreeErrorData(edata);
			orphans = true;
		}
		if (orphans)
		{
			/* a delete raced a batch: remove the rows it orphaned, validate again */
			cu_run_phase_internal(job->migration_id, "orphans", NULL);
			cu_run_phase_internal(job->migration_id, "validate", NULL);
		}
	}
	SPI_commit();
}

static void
backfill_check_args(FunctionCallInfo fcinfo, BackfillArgs *args)
{
	args->batch_size = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	args->max_batches = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	args->sleep_ms = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	args->lock_timeout_ms = PG_ARGISNULL(4) ? 2000 : PG_GETARG_INT32(4);

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
	if (args->batch_size <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be positive, not %d", args->batch_size)));
	if (!PG_ARGISNULL(2) && args->max_batches <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_batches must be positive or NULL, not %d", args->max_batches)));
	if (args->sleep_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sleep_ms must not be negative, not %d", args->sleep_ms)));
	if (args->lock_timeout_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lock_timeout_ms must be positive, not %d", args->lock_timeout_ms)));
}

/* One backfill of a migration at a time: a session advisory lock, released at the end. */
static void
backfill_lock(LOCKTAG *tag, int64 migration_id, const char *name)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, BACKFILL_LOCK_CLASS, (uint32) migration_id, 2);
	if (LockAcquire(tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("migration \"%s\" is being backfilled by another session", name),
				 errhint("Wait for it, or find it in pg_stat_activity (pg_locks: advisory lock %u/%u).",
						 (unsigned) BACKFILL_LOCK_CLASS, (unsigned) (uint32) migration_id)));
}

static Datum
backfill_run(FunctionCallInfo fcinfo, bool legacy)
{
	BackfillArgs args;
	char	   *name;
	MemoryContext jobcxt;
	int64		migration_id;
	int64		batches = 0;
	int64		rows_copied = 0;
	bool		all_complete = true;
	bool		proceed;
	LOCKTAG		tag;
	List	   *streams;
	CopyJob   *volatile job = NULL;
	ListCell   *lc;

	backfill_check_args(fcinfo, &args);
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	/* the SPI procedure context outlives the commits */
	jobcxt = CurrentMemoryContext;
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	backfill_local_settings(args.lock_timeout_ms);

	migration_id = cu_migration_id_by_name(name);
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(migration_id)};
		char	   *state;

		backfill_exec("SELECT m.state, pg_catalog.pg_has_role(m.owner, 'MEMBER') FROM customer_unify.migration m "
					  "WHERE m.id OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, SPI_OK_SELECT);
		state = backfill_getstr(1);
		if (strcmp(backfill_getstr(2), "t") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for migration \"%s\"", name)));
		if (!legacy)
			cu_check_rights(migration_id, "backfill");
		proceed = backfill_check_migration(name, state);
	}
	if (!proceed)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}

	backfill_lock(&tag, migration_id, name);
	PG_TRY();
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(migration_id)};

		streams = legacy ? list_make1(MemoryContextStrdup(TopMemoryContext, "main"))
			: backfill_streams(migration_id);
		foreach(lc, streams)
		{
			job = MemoryContextAllocZero(jobcxt, sizeof(CopyJob));
			job->migration_id = migration_id;
			job->name = name;
			job->stream = lfirst(lc);
			job->legacy = legacy;
			job->state = backfill_prepare(job, "SELECT m.state FROM customer_unify.migration m "
										  "WHERE m.id OPERATOR(pg_catalog.=) $1", 1, types);
			if (!backfill_stream(job, &args, jobcxt, &batches, &rows_copied))
				all_complete = false;
			backfill_free_plans(job);
			job = NULL;
			if (!all_complete)
				break;
		}
		(void) values;
		if (all_complete)
		{
			CopyJob		end = {0};

			end.migration_id = migration_id;
			end.name = name;
			end.legacy = legacy;
			backfill_complete(&end, args.lock_timeout_ms);
			ereport(NOTICE,
					(errmsg("backfill \"%s\" complete: %lld rows copied in this call",
							name, (long long) rows_copied)));
		}
	}
	PG_FINALLY();
	{
		if (job != NULL)
			backfill_free_plans(job);
		LockRelease(&tag, ExclusiveLock, true);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(cu_backfill_run);

/* customer_unify.backfill(name, batch_size, max_batches, sleep_ms, lock_timeout_ms) */
Datum
cu_backfill_run(PG_FUNCTION_ARGS)
{
	return backfill_run(fcinfo, false);
}

PG_FUNCTION_INFO_V1(cu_backfill);

/* 1.0: the same procedure over 1.0's catalog */
Datum
cu_backfill(PG_FUNCTION_ARGS)
{
	return backfill_run(fcinfo, true);
}
