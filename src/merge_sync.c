/*-------------------------------------------------------------------------
 * merge_sync.c
 *	  The live side of a merge: the statement-level trigger on every source
 *	  that hands the rows a statement wrote to the merge's apply function,
 *	  and the only writer of the id crosswalk (customer_unify.id_map).
 *
 *	  merge_capture() fires AFTER INSERT, UPDATE and DELETE FOR EACH
 *	  STATEMENT with transition tables.  It collects the primary keys of the
 *	  old and new rows (a key that changed is both), and calls the apply
 *	  function the merge generated for that source (its OID is the trigger's
 *	  third argument) with them, once per statement, as the tables' owner
 *	  and under the migration's loop guard: matching the rows and writing
 *	  the target is integrity maintenance, like a foreign key's cascade,
 *	  done after the caller's own write passed its checks.  The target's
 *	  own trigger (when the target is an existing table that is also a
 *	  source) stands aside while the merge writes it; the other sources'
 *	  triggers never do (the merge does not write them).
 *
 *	  The crosswalk is catalog: the apply functions, which run as the
 *	  tables' owner, write it through _id_map_set / _id_map_delete /
 *	  _id_map_retarget / _id_map_clear, which check that the caller may act
 *	  for the owner of every table of the migration, that the migration is
 *	  a merge and that it is live, and then write as the extension's owner.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "customer_unify.h"

/* ---------------------------------------------------------- the trigger */

/* The name of the primary key's (single) column of rel. */
static char *
merge_key_column(Relation rel)
{
	Oid			pk;
	Relation	idx;
	char	   *name;

	(void) RelationGetIndexList(rel);
	pk = rel->rd_pkindex;
	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("source %s of a merge has no primary key", RelationGetRelationName(rel)),
				 errhint("The primary key was dropped while the merge was live; roll the merge back.")));
	idx = index_open(pk, AccessShareLock);
	if (idx->rd_index->indnkeyatts != 1)
		elog(ERROR, "customer_unify: the primary key of %s is not a single column", RelationGetRelationName(rel));
	name = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), idx->rd_index->indkey.values[0] - 1)->attname));
	index_close(idx, AccessShareLock);
	return name;
}

PG_FUNCTION_INFO_V1(cu_merge_capture);

/*
 * The function a statement's keys go to: live_<tag>, which defers what
 * would wait for another transaction (sql/merge.sql), next to the apply
 * function; a work schema made before it existed has apply_<tag> only.
 */
static const char *
merge_live_function(Oid apply_fn, const char *tag)
{
	char	   *live = psprintf("live_%s", tag);
	Oid			argtypes[1] = {TEXTARRAYOID};

	/* (by the catalog: the writing role has no USAGE on the work schema) */
	if (OidIsValid(GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(live),
								   PointerGetDatum(buildoidvector(argtypes, 1)),
								   ObjectIdGetDatum(get_func_namespace(apply_fn)))))
		return live;
	return get_func_name(apply_fn);
}

/*
 * customer_unify.merge_capture(): AFTER ... FOR EACH STATEMENT trigger with
 * arguments (migration id, source tag, OID of the apply function).
 */
Datum
cu_merge_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	int64		migration_id;
	Oid			apply_fn;
	const char *key;
	StringInfoData sql;
	bool		any = false;
	int			rc;

	cu_check_trigger_call(fcinfo, "merge_capture", false, false);
	tg = trigdata->tg_trigger;
	if (tg->tgnargs != 3)
		elog(ERROR, "customer_unify: merge_capture needs 3 arguments, has %d", tg->tgnargs);
	migration_id = pg_strtoint64(tg->tgargs[0]);
	apply_fn = (Oid) strtoul(tg->tgargs[2], NULL, 10);

	/*
	 * The merge's own writes of the target (when the target is also a
	 * source) are not news.  It writes no other source: a write of one under
	 * the guard is the application's (a trigger of the target writing a
	 * source), and is matched like any other.
	 */
	if (strcmp(tg->tgargs[1], "target") == 0 && cu_guard_active(migration_id))
		return PointerGetDatum(NULL);
	if (!OidIsValid(apply_fn) || get_func_name(apply_fn) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the apply function of merge %lld is gone", (long long) migration_id),
				 errhint("Roll the merge back: SELECT customer_unify.rollback(...).")));

	key = quote_identifier(merge_key_column(trigdata->tg_relation));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.%s(ARRAY(",
					 quote_identifier(get_namespace_name(get_func_namespace(apply_fn))),
					 quote_identifier(merge_live_function(apply_fn, tg->tgargs[1])));
	if (trigdata->tg_oldtable != NULL && tg->tgoldtable != NULL)
	{
		appendStringInfo(&sql, "SELECT o.%s::pg_catalog.text FROM %s o", key, quote_identifier(tg->tgoldtable));
		any = true;
	}
	if (trigdata->tg_newtable != NULL && tg->tgnewtable != NULL)
	{
		appendStringInfo(&sql, "%sSELECT n.%s::pg_catalog.text FROM %s n", any ? " UNION " : "", key,
						 quote_identifier(tg->tgnewtable));
		any = true;
	}
	appendStringInfoString(&sql, "))");
	if (!any)
		elog(ERROR, "customer_unify: merge_capture fired without transition tables");

	SPI_connect();
	rc = SPI_register_trigger_data(trigdata);
	if (rc != SPI_OK_TD_REGISTER)
		elog(ERROR, "customer_unify: registering the transition tables failed: %s", SPI_result_code_string(rc));
	cu_guard_push(migration_id);
	PG_TRY();
	{
		rc = cu_spi_as(cu_relation_owner(RelationGetRelid(trigdata->tg_relation)), true, sql.data, NULL,
					   0, NULL, NULL, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "customer_unify: the merge's apply function failed: %s", SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		cu_guard_pop();
	}
	PG_END_TRY();
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------- the crosswalk */

/*
 * The caller (an apply function or a step, running as the tables' owner)
 * may write the crosswalk of this migration: it is a live merge and the
 * caller may act for the owner of each of its tables.
 */
/*
 * The last check that passed, per transaction: the apply functions write the
 * crosswalk once per row, and the answer cannot change for the same
 * migration, role and allowed states within one transaction (only the
 * engine changes states, in transactions of its own).
 */
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
static int64 checked_migration = 0;
static Oid	checked_user = InvalidOid;
static int	checked_flags = -1;

static void crosswalk_check_now(int64 migration_id, bool allow_planned, bool allow_rolled_back);
static void crosswalk_args_not_null(FunctionCallInfo fcinfo, int nargs);

static void
crosswalk_check(int64 migration_id, bool allow_planned, bool allow_rolled_back)
{
	int			flags = (allow_planned ? 1 : 0) | (allow_rolled_back ? 2 : 0);

	if (checked_lxid == MyProc->lxid && checked_migration == migration_id &&
		checked_user == GetUserId() && checked_flags == flags)
		return;
	crosswalk_check_now(migration_id, allow_planned, allow_rolled_back);
	checked_lxid = MyProc->lxid;
	checked_migration = migration_id;
	checked_user = GetUserId();
	checked_flags = flags;
}

static void
crosswalk_check_now(int64 migration_id, bool allow_planned, bool allow_rolled_back)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(migration_id)};
	int			rc;
	uint64		i;
	bool		isnull;
	char	   *kind;
	char	   *state;
	char	   *name;

	SPI_connect();
	rc = SPI_execute_with_args("SELECT m.kind, m.state, m.name FROM customer_unify.migration m "
							   "WHERE m.id OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration %lld does not exist", (long long) migration_id)));
	kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (strcmp(kind, "merge") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\" is a %s, not a merge", name, kind)));
	if ((strcmp(state, "planned") == 0 && !allow_planned) || strcmp(state, "failed") == 0 ||
		(strcmp(state, "rolled_back") == 0 && !allow_rolled_back))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the crosswalk of merge \"%s\" cannot change: the merge is %s", name, state)));
	rc = SPI_execute_with_args("SELECT c.relowner, c.oid::pg_catalog.regclass::pg_catalog.text "
							   "FROM customer_unify.migration_relation r "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the merge's relations failed");
	for (i = 0; i < SPI_processed; i++)
	{
		Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		if (!cu_may_act_as(owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for the crosswalk of merge \"%s\"", name),
					 errdetail("Only the owner of %s may change it.",
							   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2))));
	}
	SPI_finish();
}

/* the crosswalk's statements, prepared once per backend */
static SPIPlanPtr plan_map_set = NULL;
static SPIPlanPtr plan_map_delete = NULL;
static SPIPlanPtr plan_map_retarget = NULL;
static SPIPlanPtr plan_clear_held = NULL;
static SPIPlanPtr plan_clear_map = NULL;
static SPIPlanPtr plan_hold = NULL;
static SPIPlanPtr plan_release = NULL;

/*
 * Run a statement of the crosswalk as the extension's owner, prepared in
 * *plan on first use (the SQL is schema-qualified throughout, so no
 * search_path can change what it means).
 */
static uint64
crosswalk_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			   int expected)
{
	int			rc;
	uint64		processed;

	SPI_connect();
	if (*plan == NULL)
		*plan = cu_prepare_keep(sql, nargs, types);
	rc = cu_spi_as(cu_extension_owner(), false, NULL, *plan, nargs, types, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "customer_unify: crosswalk statement failed (%s): %s", SPI_result_code_string(rc), sql);
	processed = SPI_processed;
	CommandCounterIncrement();
	SPI_finish();
	return processed;
}

/*
 * The arguments of a crosswalk function: none NULL, the caller may write the
 * crosswalk of the migration in argument 1, and their values for the
 * statement.
 */
static void
crosswalk_args(FunctionCallInfo fcinfo, int nargs, bool allow_planned, bool allow_rolled_back, Datum *values)
{
	int			i;

	crosswalk_args_not_null(fcinfo, nargs);
	crosswalk_check(PG_GETARG_INT64(0), allow_planned, allow_rolled_back);
	for (i = 0; i < nargs; i++)
		values[i] = PG_GETARG_DATUM(i);
}

static void
crosswalk_args_not_null(FunctionCallInfo fcinfo, int nargs)
{
	int			i;

	for (i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of a crosswalk function must not be null", i + 1)));
}

PG_FUNCTION_INFO_V1(cu_id_map_set);

/*
 * _id_map_set(migration, source tag, old keys text[], target keys text[],
 * rules text[]): the rows of one source and the target rows they belong to.
 */
Datum
cu_id_map_set(PG_FUNCTION_ARGS)
{
	Oid			types[5] = {INT8OID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[5];
	uint64		n;

	crosswalk_args(fcinfo, 5, false, false, values);
	n = crosswalk_exec(&plan_map_set, "INSERT INTO customer_unify.id_map AS x (migration_id, source_tag, source, old_key, old_key_type, target_key, rule) "
				   "SELECT $1, $2, r.relid, u.old_key, a.atttypid::pg_catalog.regtype, u.target_key, u.rule "
				   "FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)) u(old_key, target_key, rule) "
				   "JOIN customer_unify.migration_relation r ON r.migration_id OPERATOR(pg_catalog.=) $1 "
				   "  AND r.tag OPERATOR(pg_catalog.=) $2 "
				   "JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) r.relid AND i.indisprimary "
				   "JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) r.relid "
				   "  AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] "
				   "WHERE u.old_key IS NOT NULL AND u.target_key IS NOT NULL "
				   "ON CONFLICT (migration_id, source_tag, old_key) DO UPDATE "
				   "SET target_key = EXCLUDED.target_key, rule = EXCLUDED.rule, merged_at = pg_catalog.now() "
				   "WHERE (x.target_key, x.rule) IS DISTINCT FROM (EXCLUDED.target_key, EXCLUDED.rule)",
				   5, types, values, NULL, SPI_OK_INSERT);
	PG_RETURN_INT32((int32) n);
}

PG_FUNCTION_INFO_V1(cu_id_map_delete);

/* _id_map_delete(migration, source tag, old keys text[]): rows that are gone. */
Datum
cu_id_map_delete(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTARRAYOID};
	Datum		values[3];
	uint64		n;

	crosswalk_args(fcinfo, 3, false, false, values);
	n = crosswalk_exec(&plan_map_delete, "DELETE FROM customer_unify.id_map x WHERE x.migration_id OPERATOR(pg_catalog.=) $1 "
				   "AND x.source_tag OPERATOR(pg_catalog.=) $2 AND x.old_key OPERATOR(pg_catalog.=) ANY ($3)",
				   3, types, values, NULL, SPI_OK_DELETE);
	PG_RETURN_INT32((int32) n);
}

PG_FUNCTION_INFO_V1(cu_id_map_retarget);

/* _id_map_retarget(migration, from target keys text[], to target key): clusters folded into one. */
Datum
cu_id_map_retarget(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {INT8OID, TEXTARRAYOID, TEXTOID};
	Datum		values[3];
	uint64		n;

	crosswalk_args(fcinfo, 3, false, false, values);
	n = crosswalk_exec(&plan_map_retarget, "UPDATE customer_unify.id_map x SET target_key = $3, merged_at = pg_catalog.now() "
				   "WHERE x.migration_id OPERATOR(pg_catalog.=) $1 AND x.target_key OPERATOR(pg_catalog.=) ANY ($2) "
				   "AND x.target_key OPERATOR(pg_catalog.<>) $3",
				   3, types, values, NULL, SPI_OK_UPDATE);
	PG_RETURN_INT32((int32) n);
}

PG_FUNCTION_INFO_V1(cu_id_map_clear);

/* _id_map_clear(migration): a rollback forgets what the merge matched and held. */
Datum
cu_id_map_clear(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	uint64		n;

	crosswalk_args(fcinfo, 1, false, true, values);
	(void) crosswalk_exec(&plan_clear_held, "DELETE FROM customer_unify.merge_held h WHERE h.migration_id OPERATOR(pg_catalog.=) $1",
				   1, types, values, NULL, SPI_OK_DELETE);
	n = crosswalk_exec(&plan_clear_map, "DELETE FROM customer_unify.id_map x WHERE x.migration_id OPERATOR(pg_catalog.=) $1",
					   1, types, values, NULL, SPI_OK_DELETE);
	PG_RETURN_INT32((int32) n);
}

/* ---------------------------------------------------------- decisions */

PG_FUNCTION_INFO_V1(cu_match_decide);

/*
 * customer_unify.decide(name, decision, a_tag, a_key, b_tag, b_key): a
 * manual decision about two source rows of a merge, kept in the catalog.
 */
Datum
cu_match_decide(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *decision;
	int64		migration_id;
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	int			i;
	int			rc;
	char	   *a_tag,
			   *a_key,
			   *b_tag,
			   *b_key;

	crosswalk_args_not_null(fcinfo, 6);
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	decision = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(decision, "never") != 0 && strcmp(decision, "always") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("decision must be never or always, not \"%s\"", decision)));
	SPI_connect();
	migration_id = cu_migration_id_by_name(name);
	SPI_finish();
	crosswalk_check(migration_id, true, false);
	a_tag = text_to_cstring(PG_GETARG_TEXT_PP(2));
	a_key = text_to_cstring(PG_GETARG_TEXT_PP(3));
	b_tag = text_to_cstring(PG_GETARG_TEXT_PP(4));
	b_key = text_to_cstring(PG_GETARG_TEXT_PP(5));
	if (strcmp(a_tag, b_tag) == 0 && strcmp(a_key, b_key) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a decision needs two different rows")));
	/* one row per pair, in a fixed order */
	if (strcmp(a_tag, b_tag) > 0 || (strcmp(a_tag, b_tag) == 0 && strcmp(a_key, b_key) > 0))
	{
		char	   *t;

		t = a_tag;
		a_tag = b_tag;
		b_tag = t;
		t = a_key;
		a_key = b_key;
		b_key = t;
	}
	values[0] = Int64GetDatum(migration_id);
	values[1] = CStringGetTextDatum(decision);
	values[2] = CStringGetTextDatum(a_tag);
	values[3] = CStringGetTextDatum(a_key);
	values[4] = CStringGetTextDatum(b_tag);
	values[5] = CStringGetTextDatum(b_key);
	SPI_connect();
	rc = SPI_execute_with_args("SELECT pg_catalog.count(*) FROM customer_unify.migration_relation r "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.role OPERATOR(pg_catalog.=) ANY (ARRAY['source', 'target']) "
							   "AND r.tag OPERATOR(pg_catalog.=) ANY (ARRAY[$3, $5])",
							   6, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the merge's sources failed");
	i = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &(bool){false}));
	if (i < (strcmp(a_tag, b_tag) == 0 ? 1 : 2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" and \"%s\" must be source tags of merge \"%s\"", a_tag, b_tag, name),
				 errhint("See the tags in SELECT tag FROM customer_unify.migration_relation WHERE role = 'source'.")));
	cu_catalog_exec("INSERT INTO customer_unify.match_decision (migration_id, decision, a_tag, a_key, b_tag, b_key, decided_by) "
					"VALUES ($1, $2, $3, $4, $5, $6, CURRENT_USER) "
					"ON CONFLICT (migration_id, a_tag, a_key, b_tag, b_key) DO UPDATE "
					"SET decision = EXCLUDED.decision, decided_by = EXCLUDED.decided_by, decided_at = pg_catalog.now()",
					6, types, values, NULL, SPI_OK_INSERT);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------- survivorship */

PG_FUNCTION_INFO_V1(cu_first_sfunc);

/*
 * The transition function of customer_unify.first_non_null(anyelement):
 * STRICT with no initial value, so the first non-NULL input becomes the
 * state (copied by the executor) and is kept.
 */
Datum
cu_first_sfunc(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* ---------------------------------------------------------- held clusters */

PG_FUNCTION_INFO_V1(cu_merge_hold);

/* _merge_hold(migration, target key, reason): the target refused this cluster's row. */
Datum
cu_merge_hold(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];

	crosswalk_args(fcinfo, 3, false, false, values);
	(void) crosswalk_exec(&plan_hold, "INSERT INTO customer_unify.merge_held AS h (migration_id, target_key, reason) VALUES ($1, $2, $3) "
				   "ON CONFLICT (migration_id, target_key) DO UPDATE SET reason = EXCLUDED.reason, held_at = pg_catalog.now()",
				   3, types, values, NULL, SPI_OK_INSERT);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(cu_merge_release);

/* _merge_release(migration, target keys text[]): these clusters are no longer held. */
Datum
cu_merge_release(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];
	uint64		n;

	crosswalk_args(fcinfo, 2, false, true, values);
	n = crosswalk_exec(&plan_release, "DELETE FROM customer_unify.merge_held h WHERE h.migration_id OPERATOR(pg_catalog.=) $1 "
				   "AND h.target_key OPERATOR(pg_catalog.=) ANY ($2)",
				   2, types, values, NULL, SPI_OK_DELETE);
	PG_RETURN_INT32((int32) n);
}

/* ---------------------------------------------------------- DBA actions */

PG_FUNCTION_INFO_V1(cu_merge_apply);

/*
 * _merge_apply(migration, source tag, keys text[], targets text[]): match
 * the given rows of one source again and recompute the given clusters, as
 * the tables' owner and under the loop guard, as the capture trigger does
 * (unmerge and rematch use it; the merge's own writes of the target must
 * not look like the application's).
 */
Datum
cu_merge_apply(PG_FUNCTION_ARGS)
{
	int64		migration_id;
	char	   *tag;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	Oid			tparams[1] = {TEXTARRAYOID};
	Datum		tvalues[1];
	char	   *schema;
	Oid			owner;
	int			rc;
	bool		isnull;

	crosswalk_args_not_null(fcinfo, 2);
	migration_id = PG_GETARG_INT64(0);
	tag = text_to_cstring(PG_GETARG_TEXT_PP(1));
	crosswalk_check(migration_id, false, false);
	values[0] = Int64GetDatum(migration_id);
	values[1] = CStringGetTextDatum(tag);
	SPI_connect();
	rc = SPI_execute_with_args("SELECT m.spec->>'work_schema', c.relowner FROM customer_unify.migration m "
							   "JOIN customer_unify.migration_relation r ON r.migration_id OPERATOR(pg_catalog.=) m.id "
							   "  AND r.tag OPERATOR(pg_catalog.=) $2 "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE m.id OPERATOR(pg_catalog.=) $1",
							   2, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a source tag of merge %lld", tag, (long long) migration_id)));
	schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	cu_guard_push(migration_id);
	PG_TRY();
	{
		if (!PG_ARGISNULL(2))
		{
			tvalues[0] = PG_GETARG_DATUM(2);
			rc = cu_spi_as(owner, true, psprintf("SELECT %s.%s($1)", quote_identifier(schema),
												 quote_identifier(psprintf("apply_%s", tag))),
						   NULL, 1, tparams, tvalues, NULL, false, 0);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "customer_unify: the merge's apply function failed");
		}
		if (!PG_ARGISNULL(3))
		{
			tvalues[0] = PG_GETARG_DATUM(3);
			rc = cu_spi_as(owner, true, psprintf("SELECT %s.recompute($1)", quote_identifier(schema)),
						   NULL, 1, tparams, tvalues, NULL, false, 0);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "customer_unify: the merge's recompute failed");
		}
	}
	PG_FINALLY();
	{
		cu_guard_pop();
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_VOID();
}
