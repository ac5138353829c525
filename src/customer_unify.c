/*-------------------------------------------------------------------------
 * customer_unify.c
 *	  Module entry: PG_MODULE_MAGIC, GUCs, the sync loop guard, the
 *	  per-trigger plan cache (invalidated on any relcache change) and the
 *	  small helpers the trigger, backfill and view-router files share.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			cu_sync_guard_depth = 0;

static int	cu_lock_timeout_ms = 500;
static int	cu_lock_retries = 20;

static HTAB *cu_trigger_cache = NULL;

/* Any relcache change may alter a table our cached plans touch: rebuild lazily. */
static void
cu_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CuTriggerCacheEntry *entry;

	if (cu_trigger_cache == NULL)
		return;
	hash_seq_init(&status, cu_trigger_cache);
	while ((entry = (CuTriggerCacheEntry *) hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

void
_PG_init(void)
{
	DefineCustomIntVariable("customer_unify.lock_timeout_ms",
							"lock_timeout for each DDL statement a migration runs.",
							"A statement that waits longer gives up, backs off and retries, so it never queues other sessions behind a long transaction.",
							&cu_lock_timeout_ms,
							500, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("customer_unify.lock_retries",
							"How many times a migration statement retries after a lock timeout.",
							NULL,
							&cu_lock_retries,
							20, 0, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("customer_unify");
#else
	EmitWarningsOnPlaceholders("customer_unify");
#endif
	CacheRegisterRelcacheCallback(cu_relcache_callback, (Datum) 0);
	cu_sync_trigger_init();
}

PG_FUNCTION_INFO_V1(cu_sync_guard_active);

/* customer_unify._sync_guard_active(): used in the sync triggers' WHEN clause */
Datum
cu_sync_guard_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cu_sync_guard_depth > 0);
}

CuTriggerCacheEntry *
cu_trigger_cache_lookup(Oid tgoid)
{
	CuTriggerCacheEntry *entry;
	bool		found;

	if (cu_trigger_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CuTriggerCacheEntry);
		cu_trigger_cache = hash_create("customer_unify trigger plans", 16, &ctl,
									   HASH_ELEM | HASH_BLOBS);
	}
	entry = (CuTriggerCacheEntry *) hash_search(cu_trigger_cache, &tgoid, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->cxt = NULL;
		entry->data = NULL;
		entry->plans = NIL;
	}
	return entry;
}

/* Drop what an entry holds, ready to be rebuilt. */
void
cu_trigger_cache_reset(CuTriggerCacheEntry *entry)
{
	ListCell   *lc;

	foreach(lc, entry->plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	entry->plans = NIL;
	if (entry->cxt)
		MemoryContextDelete(entry->cxt);
	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "customer_unify trigger entry",
									   ALLOCSET_SMALL_SIZES);
	entry->data = NULL;
	entry->valid = false;
}

/* Prepare a statement once and keep it for the life of the backend. */
SPIPlanPtr
cu_prepare_kept(CuTriggerCacheEntry *entry, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);
	MemoryContext old;

	if (plan == NULL)
		elog(ERROR, "customer_unify: SPI_prepare failed (%s) for: %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "customer_unify: SPI_keepplan failed");
	old = MemoryContextSwitchTo(entry->cxt);
	entry->plans = lappend(entry->plans, plan);
	MemoryContextSwitchTo(old);
	return plan;
}

const char *
cu_qualified_name(const char *schema, const char *rel)
{
	return quote_qualified_identifier(schema, rel);
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
			 errmsg("column \"%s\" of relation \"%s\" used by a customer_unify trigger does not exist",
					attname, RelationGetRelationName(rel)),
			 errhint("The migration's tables were changed outside customer_unify; roll the migration back.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* The checks tcn.c and moddatetime.c make: called as the right kind of trigger. */
void
cu_check_trigger_call(FunctionCallInfo fcinfo, const char *funcname, bool instead_of)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", funcname)));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired for each row", funcname)));
	if (instead_of ? !TRIGGER_FIRED_INSTEAD(trigdata->tg_event)
		: !TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired %s", funcname, instead_of ? "INSTEAD OF" : "AFTER")));
}

/* Execute a kept plan and insist on the expected SPI result. */
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
