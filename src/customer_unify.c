/*-------------------------------------------------------------------------
 * customer_unify.c
 *	  Module entry: PG_MODULE_MAGIC, the GUCs, and the small helpers the
 *	  trigger, router, backfill and engine files share (names, trigger-call
 *	  checks, SPI result checks).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "customer_unify.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			cu_lock_timeout_ms = 500;
int			cu_lock_retries = 20;
bool		cu_merge_never_wait = false;

void
_PG_init(void)
{
	DefineCustomIntVariable("customer_unify.lock_timeout_ms",
							"lock_timeout for each phase a migration runs.",
							"A phase that waits longer for a lock is rolled back whole, waits, and is retried, so it never holds a lock while it waits.",
							&cu_lock_timeout_ms,
							500, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("customer_unify.lock_retries",
							"How many times a migration phase is retried after a lock timeout.",
							NULL,
							&cu_lock_retries,
							20, 0, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("customer_unify.merge_never_wait",
							 "Set while a merge matches an application's write: no lock it would wait for is taken.",
							 "What would wait for another transaction is deferred to the merge's pending rows instead.",
							 &cu_merge_never_wait,
							 false,
							 PGC_USERSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("customer_unify");
#else
	EmitWarningsOnPlaceholders("customer_unify");
#endif
	cu_guard_init();
	cu_plan_cache_init();
	cu_mirror_init();
	cu_jobs_init();
}

/* "schema"."table" of a relation, from the catalog. */
const char *
cu_relation_qualified_name(Oid relid)
{
	char	   *rel = get_rel_name(relid);
	Oid			nsp = get_rel_namespace(relid);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u used by a customer_unify migration does not exist", relid),
				 errhint("The migration's tables were changed outside customer_unify; roll the migration back.")));
	return quote_qualified_identifier(get_namespace_name(nsp), rel);
}

Oid
cu_relid_or_error(const char *schema, const char *rel)
{
	Oid			nsp = get_namespace_oid(schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(rel, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation %s used by a customer_unify trigger does not exist",
						quote_qualified_identifier(schema, rel)),
				 errhint("The migration's tables were changed outside customer_unify; roll the migration back.")));
	return relid;
}

/*
 * The number of column `column` of a trigger's table, or an error naming
 * the trigger, the column and what to do (hint).
 */
AttrNumber
cu_trigger_attnum(Relation rel, const char *column, const char *trigger, const char *hint)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), column);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("trigger \"%s\": column \"%s\" of %s does not exist", trigger, column,
						RelationGetRelationName(rel)),
				 errhint("%s", hint)));
	return attnum;
}

AttrNumber
cu_attnum_or_error(Relation rel, const char *attname)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), attname) == 0)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of relation \"%s\" used by a customer_unify migration does not exist",
					attname, RelationGetRelationName(rel)),
			 errhint("The migration's tables were changed outside customer_unify; roll the migration back.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* The checks tcn.c and moddatetime.c make: called as the right kind of trigger. */
void
cu_check_trigger_call(FunctionCallInfo fcinfo, const char *funcname, bool row, bool instead_of)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", funcname)));
	if (row != (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired for each %s", funcname, row ? "row" : "statement")));
	if (instead_of && !TRIGGER_FIRED_INSTEAD(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired INSTEAD OF", funcname)));
	if (!instead_of && row && !TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired AFTER", funcname)));
}

/* The single argument of a map-driven trigger: its sync_map id. */
int64
cu_trigger_map_id(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	int64		id;
	char	   *end;

	if (trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" must have one argument, the id of its customer_unify.sync_map",
						trigger->tgname)));
	errno = 0;
	id = strtoll(trigger->tgargs[0], &end, 10);
	if (errno != 0 || *end != '\0' || id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\": \"%s\" is not a sync_map id", trigger->tgname,
						trigger->tgargs[0])));
	return id;
}

/* Execute a plan and insist on the expected SPI result. */
void
cu_spi_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
				 int expected_type, const char *what)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected_type)
		elog(ERROR, "customer_unify: %s failed: %s", what, SPI_result_code_string(rc));
}

/* The text form of a value, for error messages. */
char *
cu_datum_text(Oid type, Datum value)
{
	Oid			outfunc;
	bool		isvarlena;

	getTypeOutputInfo(type, &outfunc, &isvarlena);
	return OidOutputFunctionCall(outfunc, value);
}

/*
 * Run fn(arg) in an internal subtransaction, in the caller's memory context.
 * NULL when it committed; otherwise the error it raised, copied into the
 * caller's context, with the subtransaction rolled back (every lock it took
 * released) and the error state cleared: the caller retries, translates or
 * rethrows it.
 */
ErrorData *
cu_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/* Is this error one a phase or a batch waits out and retries? */
bool
cu_is_lock_error(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED;
}

/* SPI_prepare and SPI_keepplan: a plan that outlives the SPI connection. */
SPIPlanPtr
cu_prepare_keep(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "customer_unify: SPI_prepare failed (%s) for: %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "customer_unify: SPI_keepplan failed");
	return plan;
}

/* Wait ms milliseconds on the latch, answering interrupts. */
void
cu_sleep_ms(int ms)
{
	if (ms <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Back-off before retry attempt (1, 2, ...): 50 ms doubling up to cap_ms, with jitter. */
int
cu_backoff_ms(int attempt, int cap_ms)
{
	return (int) (Min(cap_ms, 50 << Min(Max(attempt - 1, 0), 7)) *
				  (0.5 + 0.5 * ((double) (random() % 1000) / 1000.0)));
}
