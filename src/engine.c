/*-------------------------------------------------------------------------
 * engine.c
 *	  The engine's executor and the only writer of its catalog.
 *
 *	  customer_unify._create_migration(kind, name, args): runs the kind's
 *	  validator (as the caller), checks the caller may act for every table
 *	  it names and that none is in another live migration, and stores the
 *	  validated spec, its relations and its sync maps.
 *
 *	  customer_unify._run_phase(migration, phase, options): runs one phase
 *	  of a migration.  The migration's row is locked (a second session gets
 *	  55006 at once), the caller's rights and the state are checked, and at
 *	  start the kind's step generator is run once and its output frozen in
 *	  customer_unify.step.  The phase's steps then run in one
 *	  subtransaction, as the owner of the migration's tables, under
 *	  customer_unify.lock_timeout_ms; if a lock cannot be had in time the
 *	  whole subtransaction is rolled back (every lock it took released),
 *	  the engine waits with a growing backoff and runs the phase again from
 *	  its first step, at most customer_unify.lock_retries times.  So no lock
 *	  is held while waiting longer than one lock_timeout.  Each step is
 *	  logged with its inverse; the new state is written with the last step.
 *	  rollback runs the logged inverses, newest first, after locking the
 *	  tables in the order writers lock them.
 *
 *	  customer_unify._verify(migration): the kind's checks, run as the
 *	  tables' owner so row-level security cannot hide rows from them.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "customer_unify.h"

typedef struct PhaseRule
{
	const char *phase;
	const char *from[6];
	const char *to;				/* NULL: the state stays */
	bool		internal;		/* run by the backfill engine only */
	bool		once;			/* keeps the state: skipped when already logged */
} PhaseRule;

static const PhaseRule phase_rules[] = {
	{"start", {"planned"}, "started", false, false},
	{"backfill_end", {"started"}, NULL, true, true},
	{"orphans", {"started"}, NULL, true, false},
	{"validate", {"started"}, "backfilled", true, false},
	{"cutover", {"backfilled", "verified"}, "cut_over", false, false},
	{"finalize", {"cut_over"}, "finalized", false, false},
	{"rollback", {"planned", "started", "backfilled", "verified", "cut_over"}, "rolled_back", false, false},
	{"resync", {"started", "backfilled", "verified", "cut_over"}, NULL, false, false},
	{"purge", {"finalized"}, NULL, false, false},
	{NULL}
};


/* The options of the phase running now (gates read them). */
static Jsonb *current_options = NULL;

typedef struct Migration
{
	int64		id;
	char	   *name;
	char	   *kind;
	char	   *state;
	char	   *owner;
	Oid			source;
} Migration;

static char *
getstr(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

int64
cu_migration_id_by_name(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	int			rc = SPI_execute_with_args("SELECT m.id FROM customer_unify.migration m "
										   "WHERE m.name OPERATOR(pg_catalog.=) $1",
										   1, types, values, NULL, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the migration failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" does not exist", name),
				 errhint("List migrations with: SELECT name, state FROM customer_unify.progress;")));
	return pg_strtoint64(getstr(0, 1));
}

/*
 * Lock the migration's row FOR UPDATE NOWAIT (in a subtransaction of
 * migration_load); FOR UPDATE needs UPDATE rights on the catalog, the
 * extension owner's.
 */
static void
migration_lock_row(void *id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(*(int64 *) id)};
	int			rc = cu_spi_as(cu_extension_owner(), false,
							   "SELECT m.id FROM customer_unify.migration m "
							   "WHERE m.id OPERATOR(pg_catalog.=) $1 FOR UPDATE NOWAIT",
							   NULL, 1, types, values, NULL, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: locking the migration failed");
}

/* Load (and with lock, lock for update, NOWAIT) a migration by id. */
static void
migration_load(int64 id, bool lock, Migration *m)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	int			rc;
	MemoryContext old;
	MemoryContext cxt = CurrentMemoryContext;

	if (lock)
	{
		char	   *name = NULL;
		ErrorData  *edata;

		rc = SPI_execute_with_args("SELECT m.name FROM customer_unify.migration m WHERE m.id OPERATOR(pg_catalog.=) $1",
								   1, types, values, NULL, false, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
			name = getstr(0, 1);

		edata = cu_subxact(migration_lock_row, &id);
		if (edata != NULL)
		{
			if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("migration \"%s\" is busy: another session is running one of its phases",
								name ? name : "?"),
						 errhint("Wait for it to finish; pg_stat_activity shows the session.")));
			ReThrowError(edata);
		}
	}
	rc = SPI_execute_with_args("SELECT m.name, m.kind, m.state, m.owner, m.source::pg_catalog.oid "
							   "FROM customer_unify.migration m WHERE m.id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the migration failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration %lld does not exist", (long long) id)));
	old = MemoryContextSwitchTo(cxt);
	m->id = id;
	m->name = getstr(0, 1);
	m->kind = getstr(0, 2);
	m->state = getstr(0, 3);
	m->owner = getstr(0, 4);
	m->source = (Oid) strtoul(getstr(0, 5), NULL, 10);
	MemoryContextSwitchTo(old);
}

/*
 * Raise 42501 unless the caller may act for the migration: a member of the
 * role that planned it and of the owner of every one of its tables.
 */
void
cu_check_rights(int64 migration_id, const char *action)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(migration_id)};
	int			rc;
	uint64		i;

	rc = SPI_execute_with_args("SELECT m.name, pg_catalog.pg_has_role(m.owner, 'MEMBER') "
							   "FROM customer_unify.migration m WHERE m.id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration %lld does not exist", (long long) migration_id)));
	if (strcmp(getstr(0, 2), "t") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for migration \"%s\"", getstr(0, 1)),
				 errdetail("Only members of the role that planned it may %s it.", action)));
	rc = SPI_execute_with_args("SELECT c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner "
							   "FROM customer_unify.migration_relation r "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 "
							   "UNION ALL SELECT c.oid::pg_catalog.regclass::pg_catalog.text, c.relowner "
							   "FROM customer_unify.migration m "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.source "
							   "WHERE m.id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the migration's relations failed");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		if (!cu_may_act_as(owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of table %s", getstr(i, 1)),
					 errhint("Reshaping a table needs the rights of its owner.")));
	}
}

/* The role the migration's DDL runs as: the owner of its source (or of what is left). */
static Oid
migration_tables_owner(Migration *m)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(m->id)};
	int			rc;
	bool		isnull;

	rc = SPI_execute_with_args("SELECT c.relowner FROM pg_catalog.pg_class c "
							   "WHERE c.oid OPERATOR(pg_catalog.=) (SELECT m.source FROM customer_unify.migration m "
							   "  WHERE m.id OPERATOR(pg_catalog.=) $1) "
							   "UNION ALL SELECT c.relowner FROM customer_unify.migration_relation r "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
							   1, types, values, NULL, false, 1);
	if (rc == SPI_OK_SELECT && SPI_processed > 0)
		return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return get_role_oid(m->owner, false);
}

/*
 * Was a phase that keeps the state (the end of the backfill, committed
 * before its validation) already run?  A backfill resumed after a crash
 * between the two goes on with the validation.
 */
static bool
phase_already_run(Migration *m, const PhaseRule *rule)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(m->id), CStringGetTextDatum(rule->phase)};
	int			rc = SPI_execute_with_args("SELECT 1 FROM customer_unify.step_log l "
										   "WHERE l.migration_id OPERATOR(pg_catalog.=) $1 "
										   "AND l.phase OPERATOR(pg_catalog.=) $2 AND l.outcome OPERATOR(pg_catalog.=) 'ok'",
										   2, types, values, NULL, false, 1);

	return rc == SPI_OK_SELECT && SPI_processed > 0;
}

static const PhaseRule *
phase_rule(const char *phase)
{
	const PhaseRule *r;

	for (r = phase_rules; r->phase != NULL; r++)
		if (strcmp(r->phase, phase) == 0)
			return r;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown phase \"%s\"", phase),
			 errhint("Phases: start, cutover, finalize, rollback; the backfill runs its own.")));
	return NULL;
}

static void
phase_check_state(const PhaseRule *rule, Migration *m)
{
	int			i;
	StringInfoData allowed;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(m->state), CStringGetTextDatum(m->name)};
	char	   *hint = NULL;

	for (i = 0; i < 6 && rule->from[i] != NULL; i++)
		if (strcmp(rule->from[i], m->state) == 0)
			return;
	initStringInfo(&allowed);
	for (i = 0; i < 6 && rule->from[i] != NULL; i++)
		appendStringInfo(&allowed, "%s%s", i ? " or " : "", rule->from[i]);
	if (SPI_execute_with_args("SELECT customer_unify._next_step_hint($1, $2)", 2, types, values,
							  NULL, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
		hint = getstr(0, 1);
	if (strcmp(rule->phase, "rollback") == 0 && strcmp(m->state, "finalized") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot roll back migration \"%s\": it is finalized", m->name),
				 errdetail("finalize made the new shape the only one; there is nothing to go back to.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s migration \"%s\": it is %s",
					strcmp(rule->phase, "cutover") == 0 ? "cut over" :
					strcmp(rule->phase, "rollback") == 0 ? "roll back" : rule->phase,
					m->name, m->state),
			 errdetail("%s needs state %s.", rule->phase, allowed.data),
			 hint ? errhint("%s", hint) : 0));
}

/* The name of the kind's function for role (validate, steps, ...), schema-qualified. */
static char *
operation_function(const char *kind, const char *role)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(kind)};
	char	   *sql = psprintf("SELECT o.%s::pg_catalog.regproc::pg_catalog.text FROM customer_unify.operation o "
							   "WHERE o.kind OPERATOR(pg_catalog.=) $1", role);
	int			rc = SPI_execute_with_args(sql, 1, types, values, NULL, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the operation failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown kind of migration \"%s\"", kind)));
	return getstr(0, 1);
}

/* --------------------------------------------------------- freezing */

/*
 * start: the tables may have changed since the plan (a child table, the
 * target's name taken): run the validator again on the arguments of the plan,
 * as the caller, before anything is created.
 */
static void
phase_revalidate(Migration *m)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(m->name), Int64GetDatum(m->id)};
	char	   *fn = operation_function(m->kind, "validate");
	int			rc;

	rc = SPI_execute_with_args(psprintf("SELECT %s($1, (x.spec->'args') OPERATOR(pg_catalog.||) "
										"pg_catalog.jsonb_build_object('source', x.source::pg_catalog.oid)) "
										"FROM customer_unify.migration x "
										"WHERE x.id OPERATOR(pg_catalog.=) $2 AND x.spec OPERATOR(pg_catalog.?) 'args'", fn),
							   2, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: validating the plan again failed");
}

/*
 * Run the operation's generator fn over the migration once and store its
 * rows with insert_sql ($1 the migration, $2 the rows as a jsonb array).
 */
static void
freeze_rows(Migration *m, const char *fn, const char *insert_sql, const char *what)
{
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2];
	int			rc;
	bool		isnull;

	values[0] = Int64GetDatum(m->id);
	rc = SPI_execute_with_args(psprintf("SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(g)) "
										"FROM customer_unify.migration m, %s(m) g "
										"WHERE m.id OPERATOR(pg_catalog.=) $1", fn),
							   1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "customer_unify: generating the %s failed", what);
	values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		cu_catalog_exec(insert_sql, 2, types, values, NULL, SPI_OK_INSERT);
}

/*
 * start: run the step generator and the copy plan once, keep their output,
 * and the names of the source's columns, which the frozen steps name (the
 * DDL guard keeps them).
 */
static void
phase_freeze(Migration *m)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(m->id)};

	cu_catalog_exec("UPDATE customer_unify.migration x SET spec = x.spec OPERATOR(pg_catalog.||) "
					"pg_catalog.jsonb_build_object('source_columns', "
					"(SELECT pg_catalog.jsonb_agg(a.attname ORDER BY a.attnum) FROM pg_catalog.pg_attribute a "
					" WHERE a.attrelid OPERATOR(pg_catalog.=) x.source AND a.attnum OPERATOR(pg_catalog.>) 0 "
					" AND NOT a.attisdropped)) "
					"WHERE x.id OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, SPI_OK_UPDATE);
	freeze_rows(m, operation_function(m->kind, "steps"),
				"INSERT INTO customer_unify.step (migration_id, phase, seq, statement, inverse, "
				"lock_mode, lock_relation, rows_estimate, registers) "
				"SELECT $1, s.phase, s.seq, s.statement, s.inverse, s.lock_mode, s.lock_relation, "
				"s.rows_estimate, s.registers "
				"FROM pg_catalog.jsonb_to_recordset($2) AS s(phase text, seq int, statement text, "
				"inverse text, lock_mode text, lock_relation text, rows_estimate bigint, registers jsonb)",
				"steps");
	freeze_rows(m, operation_function(m->kind, "copy_plan"),
				"INSERT INTO customer_unify.backfill_state (migration_id, stream, key_type, plan) "
				"SELECT $1, p.stream, p.key_type, p.plan "
				"FROM pg_catalog.jsonb_to_recordset($2) AS p(stream text, key_type regtype, plan jsonb)",
				"copy plan");
}

/* ---------------------------------------------------------- steps */

typedef struct Step
{
	int64		log_id;			/* rollback: the step_log row it reverts */
	int			seq;
	char	   *statement;
	char	   *inverse;
	char	   *lock_mode;
	char	   *lock_relation;
	char	   *registers;		/* jsonb as text, or NULL */
	char	   *creates_tag;
} Step;

/* A column of the current SPI result by name, or NULL if it has none. */
static char *
step_column(uint64 row, const char *name)
{
	int			col = SPI_fnumber(SPI_tuptable->tupdesc, name);

	return col > 0 ? getstr(row, col) : NULL;
}

/*
 * Append the rows of the current SPI result to steps, one Step per row from
 * its columns of the same names (statement, inverse, lock_mode,
 * lock_relation, registers, creates_tag, log_id, seq); a result without seq
 * is numbered on from *seq.
 */
static List *
steps_from_result(List *steps, int *seq, const char *what)
{
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		Step	   *s = palloc0(sizeof(Step));
		char	   *seqtext = step_column(i, "seq");
		char	   *log_id = step_column(i, "log_id");

		s->seq = seqtext != NULL ? atoi(seqtext) : ++(*seq);
		s->log_id = log_id != NULL ? pg_strtoint64(log_id) : 0;
		s->statement = step_column(i, "statement");
		s->inverse = step_column(i, "inverse");
		s->lock_mode = step_column(i, "lock_mode");
		s->lock_relation = step_column(i, "lock_relation");
		s->registers = step_column(i, "registers");
		s->creates_tag = step_column(i, "creates_tag");
		if (s->statement == NULL)
			elog(ERROR, "customer_unify: %s: a step without a statement", what);
		steps = lappend(steps, s);
	}
	return steps;
}

static List *
phase_steps(Migration *m, const char *phase)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(m->id), CStringGetTextDatum(phase)};
	int			rc;
	int			seq = 0;

	rc = SPI_execute_with_args("SELECT s.seq, s.statement, s.inverse, s.lock_mode, s.lock_relation, "
							   "s.registers::pg_catalog.text AS registers, s.registers->'relation'->>'tag' AS creates_tag "
							   "FROM customer_unify.step s "
							   "WHERE s.migration_id OPERATOR(pg_catalog.=) $1 AND s.phase OPERATOR(pg_catalog.=) $2 "
							   "ORDER BY s.seq",
							   2, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the steps failed");
	return steps_from_result(NIL, &seq, "phase steps");
}

/*
 * resync: the steps that carry the source's privileges and row-level
 * security to its copies again, generated now (the guard runs them after the
 * application changed those of the source).
 */
static List *
resync_steps(Migration *m)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(m->id)};
	char	   *fn = operation_function(m->kind, "security");
	int			rc;
	int			seq = 0;

	rc = SPI_execute_with_args(psprintf("SELECT s.statement, s.lock_mode, s.lock_relation "
										"FROM customer_unify.migration m, %s(m) s "
										"WHERE m.id OPERATOR(pg_catalog.=) $1", fn),
							   1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: generating the resync steps failed");
	return steps_from_result(NIL, &seq, "resync steps");
}

/*
 * rollback: lock the migration's tables that still exist, the source first
 * (the order writers lock them), then run the inverses of every logged step,
 * newest first.  If a source table is gone, the tables the migration created
 * are kept: they hold the only copy of its data.
 */
static List *
rollback_steps(Migration *m, bool *keep_created)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(m->id)};
	List	   *steps = NIL;
	List	   *inverses;
	ListCell   *lc;
	int			rc;
	int			seq = 0;

	rc = SPI_execute_with_args("SELECT pg_catalog.bool_or(c.oid IS NULL) "
							   "FROM customer_unify.migration_relation r "
							   "LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.role OPERATOR(pg_catalog.=) 'source'",
							   1, types, values, NULL, false, 1);
	*keep_created = rc == SPI_OK_SELECT && SPI_processed == 1 && getstr(0, 1) != NULL &&
		strcmp(getstr(0, 1), "t") == 0;

	rc = SPI_execute_with_args("SELECT pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', c.oid::pg_catalog.regclass) AS statement, "
							   "'ACCESS EXCLUSIVE' AS lock_mode, c.oid::pg_catalog.regclass::pg_catalog.text AS lock_relation "
							   "FROM customer_unify.migration_relation r "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.live "
							   "ORDER BY pg_catalog.array_position(ARRAY['source', 'target', 'view'], r.role), r.tag",
							   1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the migration's relations failed");
	steps = steps_from_result(steps, &seq, "rollback locks");
	/* a created relation that is still there is kept (the view went with the source) */
	rc = SPI_execute_with_args("SELECT l.id AS log_id, l.inverse AS statement, l.lock_relation, "
							   "CASE WHEN EXISTS (SELECT 1 FROM customer_unify.migration_relation r "
							   "  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							   "  WHERE r.migration_id OPERATOR(pg_catalog.=) l.migration_id "
							   "  AND r.tag OPERATOR(pg_catalog.=) l.creates_tag) "
							   "THEN l.creates_tag END AS creates_tag "
							   "FROM customer_unify.step_log l "
							   "WHERE l.migration_id OPERATOR(pg_catalog.=) $1 AND l.outcome OPERATOR(pg_catalog.=) 'ok' "
							   "AND l.inverse IS NOT NULL ORDER BY l.id DESC",
							   1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the step log failed");
	inverses = steps_from_result(NIL, &seq, "rollback inverses");
	foreach(lc, inverses)
	{
		Step	   *s = (Step *) lfirst(lc);

		if (*keep_created && s->creates_tag != NULL)
		{
			ereport(NOTICE,
					(errmsg("keeping the %s of migration \"%s\": its source is gone and the %s holds the only copy of its data",
							s->creates_tag, m->name, s->creates_tag),
					 errhint("It is not dropped; drop it yourself once its data is safe.")));
			continue;
		}
		steps = lappend(steps, s);
	}
	return steps;
}

/* After a step ran: the relation it created, the map mode it changed. */
static void
apply_registers(Migration *m, Step *s)
{
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2];

	if (s->registers == NULL)
		return;
	values[0] = Int64GetDatum(m->id);
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(s->registers));
	if (strstr(s->registers, "\"relation\"") != NULL)
	{
		cu_catalog_exec("INSERT INTO customer_unify.migration_relation "
						"(migration_id, tag, relid, role, created, nspname, relname) "
						"SELECT $1, $2->'relation'->>'tag', c.oid, $2->'relation'->>'role', true, n.nspname, c.relname "
						"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
						"WHERE n.nspname OPERATOR(pg_catalog.=) ($2->'relation'->>'nspname') "
						"AND c.relname OPERATOR(pg_catalog.=) ($2->'relation'->>'relname')",
						2, types, values, NULL, SPI_OK_INSERT);
		if (SPI_processed != 1)
			elog(ERROR, "customer_unify: the relation created by step %d was not found", s->seq);
	}
	/* an index the migration's job builds after the copy (1.3 on) */
	if (strstr(s->registers, "\"job_index\"") != NULL)
		cu_catalog_exec("INSERT INTO customer_unify.job_index AS x "
						"(migration_id, index_name, relation_tag, columns, is_unique, as_constraint) "
						"SELECT $1, i->>'index_name', i->>'relation_tag', "
						"ARRAY(SELECT pg_catalog.jsonb_array_elements_text(i->'columns'))::pg_catalog.name[], "
						"(i->>'is_unique')::pg_catalog.bool, i->>'as_constraint' "
						"FROM (SELECT $2->'job_index' AS i) j "
						"ON CONFLICT (migration_id, index_name) DO UPDATE SET state = 'planned', last_error = NULL, built_at = NULL",
						2, types, values, NULL, SPI_OK_INSERT);
	if (strstr(s->registers, "\"map_mode\"") != NULL)
		cu_catalog_exec("UPDATE customer_unify.sync_map SET mode = $2->'map_mode'->>'mode' "
						"WHERE migration_id OPERATOR(pg_catalog.=) $1 "
						"AND name OPERATOR(pg_catalog.=) ($2->'map_mode'->>'name')",
						2, types, values, NULL, SPI_OK_UPDATE);
}

static void
log_step(Migration *m, const char *phase, Step *s, uint64 rows, double ms, int attempts,
		 TimestampTz started, const char *note)
{
	Oid			types[12] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	INT8OID, FLOAT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[12];
	char		nulls[13] = "            ";

	values[0] = Int64GetDatum(m->id);
	values[1] = CStringGetTextDatum(phase);
	values[2] = Int32GetDatum(s->seq);
	values[3] = CStringGetTextDatum(s->statement);
#define OPT_TEXT(i, v) do { if ((v) != NULL) values[i] = CStringGetTextDatum(v); else nulls[i] = 'n'; } while (0)
	OPT_TEXT(4, s->inverse);
	OPT_TEXT(5, s->lock_mode);
	OPT_TEXT(6, s->lock_relation);
	values[7] = Int64GetDatum((int64) rows);
	values[8] = Float8GetDatum(ms);
	values[9] = Int32GetDatum(attempts);
	values[10] = TimestampTzGetDatum(started);
	OPT_TEXT(11, note);
#undef OPT_TEXT
	cu_catalog_exec("INSERT INTO customer_unify.step_log (migration_id, phase, seq, statement, inverse, "
					"lock_mode, lock_relation, rows, duration_ms, attempts, outcome, started_at, note, creates_tag) "
					"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, round($9::pg_catalog.numeric, 3), $10, 'ok', $11, $12, "
					"(SELECT s.registers->'relation'->>'tag' FROM customer_unify.step s "
					" WHERE s.migration_id OPERATOR(pg_catalog.=) $1 AND s.phase OPERATOR(pg_catalog.=) $2 "
					" AND s.seq OPERATOR(pg_catalog.=) $3))",
					12, types, values, nulls, SPI_OK_INSERT);
	if (s->log_id > 0)
	{
		Oid			t1[1] = {INT8OID};
		Datum		v1[1] = {Int64GetDatum(s->log_id)};

		cu_catalog_exec("UPDATE customer_unify.step_log SET outcome = 'reverted' WHERE id OPERATOR(pg_catalog.=) $1",
						1, t1, v1, NULL, SPI_OK_UPDATE);
	}
}

static void
set_state(Migration *m, const char *state)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(m->id), CStringGetTextDatum(state)};

	cu_catalog_exec("UPDATE customer_unify.migration SET state = $2, updated_at = pg_catalog.now() "
					"WHERE id OPERATOR(pg_catalog.=) $1", 2, types, values, NULL, SPI_OK_UPDATE);
	cu_catalog_exec("UPDATE customer_unify.migration_relation "
					"SET live = $2 OPERATOR(pg_catalog.=) ANY (ARRAY['planned', 'started', 'backfilled', 'verified', 'cut_over']) "
					"WHERE migration_id OPERATOR(pg_catalog.=) $1", 2, types, values, NULL, SPI_OK_UPDATE);
	/* a rolled-back migration's tables are gone, and so are the indexes its job would build (1.3 on) */
	if (strcmp(state, "rolled_back") == 0 &&
		OidIsValid(get_relname_relid("job_index", get_namespace_oid("customer_unify", false))))
		cu_catalog_exec("DELETE FROM customer_unify.job_index WHERE migration_id OPERATOR(pg_catalog.=) $1",
						1, types, values, NULL, SPI_OK_DELETE);
}

/* Run the steps once, in the current subtransaction. */
static void
phase_attempt(Migration *m, const PhaseRule *rule, List *steps, Oid owner, int attempt)
{
	ListCell   *lc;
	int			nest = NewGUCNestLevel();
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", cu_lock_timeout_ms);
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the steps' own chatter (IF EXISTS ... skipping) is not the caller's business */
	if (client_min_messages < WARNING)
		(void) set_config_option("client_min_messages", "warning", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	cu_engine_depth++;
	foreach(lc, steps)
	{
		Step	   *s = (Step *) lfirst(lc);
		TimestampTz t0 = GetCurrentTimestamp();
		int			rc;
		uint64		rows;
		char	   *note = NULL;
		long		secs;
		int			usecs;

		rc = cu_spi_as(owner, true, s->statement, NULL, 0, NULL, NULL, NULL, false, 0);
		if (rc < 0)
			elog(ERROR, "customer_unify: step %d of %s failed (%s): %s", s->seq, rule->phase,
				 SPI_result_code_string(rc), s->statement);
		rows = SPI_processed;
		CommandCounterIncrement();
		/* a gate (SELECT customer_unify._gate_*) says what it decided */
		if (rc == SPI_OK_SELECT && SPI_processed == 1 && SPI_tuptable->tupdesc->natts == 1 &&
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) == TEXTOID)
			note = getstr(0, 1);
		TimestampDifference(t0, GetCurrentTimestamp(), &secs, &usecs);
		apply_registers(m, s);
		log_step(m, rule->phase, s, rows, secs * 1000.0 + usecs / 1000.0, attempt, t0, note);
	}
	if (rule->to != NULL)
		set_state(m, rule->to);
	cu_engine_depth--;
	AtEOXact_GUC(true, nest);
}

/* phase_attempt's arguments, for cu_subxact */
typedef struct PhaseAttempt
{
	Migration  *m;
	const PhaseRule *rule;
	List	   *steps;
	Oid			owner;
	int			attempt;
} PhaseAttempt;

static void
phase_attempt_call(void *arg)
{
	PhaseAttempt *pa = (PhaseAttempt *) arg;

	phase_attempt(pa->m, pa->rule, pa->steps, pa->owner, pa->attempt);
}

/*
 * Run phase of migration id: see the header comment.  Called with an SPI
 * connection.
 */
void
cu_run_phase_internal(int64 migration_id, const char *phase, Jsonb *options)
{
	const PhaseRule *rule = phase_rule(phase);
	Migration	m;
	List	   *steps;
	Oid			owner;
	int			attempt = 0;
	bool		keep_created = false;
	Jsonb	   *saved_options = current_options;
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	migration_load(migration_id, true, &m);
	/*
	 * resync only derives the copies' security from the source again, as its
	 * owner: whoever changed the source's privileges (a grantee WITH GRANT
	 * OPTION too) must not be refused by it.
	 */
	if (strcmp(phase, "resync") != 0)
		cu_check_rights(m.id, strcmp(phase, "cutover") == 0 ? "cut over" :
						strcmp(phase, "rollback") == 0 ? "roll back" : phase);
	phase_check_state(rule, &m);
	if (!rule->internal && strcmp(phase, "resync") != 0)
		cu_job_refuse_if_running(m.id, m.name, phase);
	if (rule->once && phase_already_run(&m, rule))
	{
		AtEOXact_GUC(true, nest);
		return;
	}
	if (strcmp(phase, "start") == 0)
	{
		phase_revalidate(&m);
		phase_freeze(&m);
	}
	if (strcmp(phase, "rollback") == 0)
		steps = rollback_steps(&m, &keep_created);
	else if (strcmp(phase, "resync") == 0)
		steps = resync_steps(&m);
	else
		steps = phase_steps(&m, phase);
	owner = migration_tables_owner(&m);
	current_options = options;

	for (;;)
	{
		PhaseAttempt pa = {&m, rule, steps, owner, ++attempt};
		ErrorData  *edata = cu_subxact(phase_attempt_call, &pa);

		if (edata == NULL)
			break;
		cu_engine_depth = 0;
		current_options = saved_options;
		if (!cu_is_lock_error(edata))
			ReThrowError(edata);
		if (attempt > cu_lock_retries)
			ereport(ERROR,
					(errcode(edata->sqlerrcode),
					 errmsg("could not run phase %s of migration \"%s\": the locks it needs were not free in %d attempts",
							phase, m.name, attempt),
					 errdetail("Last error: %s", edata->message),
					 errhint("A long transaction holds a conflicting lock; find it in pg_locks / pg_stat_activity, "
							 "or raise customer_unify.lock_retries / customer_unify.lock_timeout_ms. "
							 "Nothing was held while waiting and nothing was changed.")));
		FreeErrorData(edata);
		current_options = options;
		/* nothing is held now: back off 50 ms doubling up to 2 s, with jitter */
		cu_sleep_ms(cu_backoff_ms(attempt, 2000));
	}
	current_options = saved_options;
	AtEOXact_GUC(true, nest);
}

PG_FUNCTION_INFO_V1(cu_run_phase);

/* customer_unify._run_phase(migration bigint, phase text, options jsonb) -> new state */
Datum
cu_run_phase(PG_FUNCTION_ARGS)
{
	int64		id;
	char	   *phase;
	Jsonb	   *options = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	char	   *state;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration and phase must not be null")));
	id = PG_GETARG_INT64(0);
	phase = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (phase_rule(phase)->internal)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("phase \"%s\" is run by customer_unify.backfill only", phase)));
	SPI_connect();
	cu_run_phase_internal(id, phase, options);
	{
		Migration	m;

		migration_load(id, false, &m);
		state = MemoryContextStrdup(TopTransactionContext, m.state);
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(state));
}

PG_FUNCTION_INFO_V1(cu_phase_option);

/* customer_unify._phase_option(key): an option of the phase running now, or NULL */
Datum
cu_phase_option(PG_FUNCTION_ARGS)
{
	JsonbValue	k;
	JsonbValue *v;
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (current_options == NULL || !JB_ROOT_IS_OBJECT(current_options))
		PG_RETURN_NULL();
	k.type = jbvString;
	k.val.string.val = key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&current_options->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		PG_RETURN_NULL();
	if (v->type == jbvBool)
		PG_RETURN_TEXT_P(cstring_to_text(v->val.boolean ? "true" : "false"));
	if (v->type == jbvString)
		PG_RETURN_TEXT_P(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
	PG_RETURN_TEXT_P(cstring_to_text(JsonbToCString(NULL, &current_options->root, VARSIZE(current_options))));
}

/* ------------------------------------------------------------ verify */

PG_FUNCTION_INFO_V1(cu_verify);

/*
 * customer_unify._verify(migration bigint) -> (check_name, expected, actual, ok):
 * the kind's checks as the tables' owner; all ok moves backfilled to verified.
 */
Datum
cu_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		id = PG_GETARG_INT64(0);
	Migration	m;
	Oid			owner;
	char	   *fn;
	int			rc;
	bool		all_ok = true;
	uint64		i;
	int			nest;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	MemoryContext per_query;
	MemoryContext old;
	bool		has_job_index;

	InitMaterializedSRF(fcinfo, 0);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	SPI_connect();
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	migration_load(id, false, &m);
	cu_check_rights(id, "verify");
	if (strcmp(m.state, "started") != 0 && strcmp(m.state, "backfilled") != 0 &&
		strcmp(m.state, "verified") != 0 && strcmp(m.state, "cut_over") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot verify migration \"%s\": it is %s", m.name, m.state),
				 errdetail("verify needs state started or backfilled or verified or cut_over.")));
	fn = operation_function(m.kind, "verify");
	owner = migration_tables_owner(&m);
	/* the operation's checks, then the indexes its job builds (add_index; 1.3 on) */
	has_job_index = OidIsValid(get_relname_relid("job_index", get_namespace_oid("customer_unify", false)));
	rc = cu_spi_as(owner, true,
				   psprintf("SELECT v.check_name, v.expected, v.actual, v.ok "
							"FROM customer_unify.migration m, %s(m) v "
							"WHERE m.id OPERATOR(pg_catalog.=) $1 %s", fn, !has_job_index ? "" :
							"UNION ALL SELECT * FROM customer_unify._job_index_checks($1)"),
				   NULL, 1, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: verify failed: %s", SPI_result_code_string(rc));
	old = MemoryContextSwitchTo(per_query);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		out[4];
		bool		nulls[4];
		int			c;

		for (c = 0; c < 4; c++)
		{
			out[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
			if (!nulls[c] && c < 3)
				out[c] = PointerGetDatum(DatumGetTextPCopy(out[c]));
		}
		if (nulls[3] || !DatumGetBool(out[3]))
			all_ok = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	MemoryContextSwitchTo(old);
	if (all_ok && strcmp(m.state, "backfilled") == 0)
	{
		Oid			t2[2] = {INT8OID, TEXTOID};
		Datum		v2[2] = {Int64GetDatum(id), CStringGetTextDatum("verified")};

		cu_catalog_exec("UPDATE customer_unify.migration SET state = $2, updated_at = pg_catalog.now() "
						"WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'backfilled'",
						2, t2, v2, NULL, SPI_OK_UPDATE);
	}
	AtEOXact_GUC(true, nest);
	SPI_finish();
	return (Datum) 0;
}

/* -------------------------------------------------------- create */

/* A new migration's catalog rows, for cu_subxact */
typedef struct StoreMigration
{
	Datum		name;			/* text */
	Datum		plan;			/* jsonb: spec, source, relations, maps */
	const char *kind;
	int64		id;				/* out */
} StoreMigration;

static void
store_migration(void *arg)
{
	StoreMigration *st = (StoreMigration *) arg;
	Oid			t4[4] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID};
	Datum		v4[4] = {st->name, st->plan, CStringGetTextDatum(st->kind),
	CStringGetTextDatum(GetUserNameFromId(GetUserId(), false))};
	Oid			t2[2] = {INT8OID, JSONBOID};
	Datum		v2[2];
	bool		isnull;

	cu_catalog_exec("INSERT INTO customer_unify.migration (name, kind, spec, source, owner) "
					"VALUES ($1, $3, $2->'spec', ($2->>'source')::pg_catalog.oid, $4) RETURNING id",
					4, t4, v4, NULL, SPI_OK_INSERT_RETURNING);
	st->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	v2[0] = Int64GetDatum(st->id);
	v2[1] = st->plan;
	cu_catalog_exec("INSERT INTO customer_unify.migration_relation "
					"(migration_id, tag, relid, role, created, nspname, relname) "
					"SELECT $1, r->>'tag', c.oid, r->>'role', false, n.nspname, c.relname "
					"FROM pg_catalog.jsonb_array_elements($2->'relations') r "
					"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) (r->>'relid')::pg_catalog.oid "
					"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace",
					2, t2, v2, NULL, SPI_OK_INSERT);
	cu_catalog_exec("WITH maps AS (SELECT x.mp FROM pg_catalog.jsonb_array_elements($2->'maps') x(mp)), "
					"ins AS (INSERT INTO customer_unify.sync_map (migration_id, name, from_tag, to_tag, from_key, to_key) "
					"  SELECT $1, mp->>'name', mp->>'from_tag', mp->>'to_tag', mp->>'from_key', mp->>'to_key' "
					"  FROM maps RETURNING id, name) "
					"INSERT INTO customer_unify.sync_map_column (map_id, ord, from_column, to_column) "
					"SELECT ins.id, c.ord, c.col->>0, c.col->>1 FROM ins "
					"JOIN maps ON (maps.mp->>'name') OPERATOR(pg_catalog.=) ins.name "
					"CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(maps.mp->'columns') WITH ORDINALITY c(col, ord)",
					2, t2, v2, NULL, SPI_OK_INSERT);
}

PG_FUNCTION_INFO_V1(cu_create_migration);

/*
 * customer_unify._create_migration(kind text, name text, args jsonb) -> id.
 * The validator returns {spec, source, relations: [{tag, role, relid}],
 * maps: [{name, from_tag, to_tag, from_key, to_key, columns: [[from, to]]}]}.
 */
Datum
cu_create_migration(PG_FUNCTION_ARGS)
{
	char	   *kind;
	char	   *name;
	Datum		args;
	char	   *fn;
	int			rc;
	bool		isnull;
	Datum		plan;
	volatile int64 id = 0;
	uint64		i;
	int			nest;
	Oid			types[3] = {TEXTOID, JSONBOID, JSONBOID};
	Datum		values[3];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null")));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	args = PG_GETARG_DATUM(2);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration name must not be empty")));

	SPI_connect();
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	values[0] = CStringGetTextDatum(name);
	rc = SPI_execute_with_args("SELECT 1 FROM customer_unify.migration m WHERE m.name OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 1);
	if (rc == SPI_OK_SELECT && SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\" already exists", name),
				 errhint("Migration names are unique, including finished and rolled-back ones.")));
	fn = operation_function(kind, "validate");

	/* the validator, as the caller: it checks ownership and every argument */
	values[1] = args;
	rc = SPI_execute_with_args(psprintf("SELECT %s($1, $2)", fn), 2, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "customer_unify: the validator of %s failed", kind);
	plan = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "customer_unify: the validator of %s returned nothing", kind);
	plan = PointerGetDatum(DatumGetJsonbPCopy(plan));
	values[1] = plan;

	/* the caller acts for the owner of every relation; none is in another live migration */
	rc = SPI_execute_with_args("SELECT (r->>'relid')::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text, "
							   "c.relowner, (SELECT m.name FROM customer_unify.migration_relation x "
							   "  JOIN customer_unify.migration m ON m.id OPERATOR(pg_catalog.=) x.migration_id "
							   "  WHERE x.relid OPERATOR(pg_catalog.=) (r->>'relid')::pg_catalog.oid AND x.live) "
							   "FROM pg_catalog.jsonb_array_elements($2->'relations') r "
							   "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) (r->>'relid')::pg_catalog.oid",
							   2, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: checking the relations failed");
	for (i = 0; i < SPI_processed; i++)
	{
		Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		char	   *live = getstr(i, 3);

		if (!cu_may_act_as(owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of table %s", getstr(i, 1)),
					 errhint("Reshaping a table needs the rights of its owner.")));
		if (live != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("table %s already has a live migration \"%s\"", getstr(i, 1), live),
					 errhint("Finalize or roll back that migration first.")));
	}

	/* store it, as the extension's owner; a concurrent plan of the same table loses with 55006 */
	{
		StoreMigration st = {values[0], plan, kind, 0};
		ErrorData  *edata = cu_subxact(store_migration, &st);

		if (edata != NULL)
		{
			if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("a table of migration \"%s\" or its name was just taken by another session", name),
						 errdetail("%s", edata->message),
						 errhint("Finalize or roll back the other migration first, or choose another name.")));
			ReThrowError(edata);
		}
		id = st.id;
	}
	AtEOXact_GUC(true, nest);
	SPI_finish();
	PG_RETURN_INT64(id);
}
