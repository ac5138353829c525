/*-------------------------------------------------------------------------
 * guard.c
 *	  Backend-local state that keeps the migration machinery from feeding
 *	  on itself:
 *	  - the loop guard, a stack of the migrations whose mirrored write is
 *	    running (their triggers' WHEN clauses test it, so a mirrored row is
 *	    neither queued nor mirrored back; other migrations still see it);
 *	  - the engine-active depth, set while the engine runs a migration's own
 *	    DDL, so the event-trigger guard lets it through;
 *	  - the router's capture of the row versions its statements stored;
 *	  - the flag of a TRUNCATE of a migration's source in progress.
 *	  All of it is reset when a transaction ends.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define GUARD_MAX_DEPTH 64

static int64 guard_stack[GUARD_MAX_DEPTH];
static int	guard_depth = 0;

int			cu_engine_depth = 0;

static CuCapture *capture = NULL;

static int64 truncating_migration = 0;

void
cu_guard_push(int64 migration_id)
{
	if (guard_depth >= GUARD_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("customer_unify: mirrored writes nested more than %d deep", GUARD_MAX_DEPTH),
				 errhint("Triggers of the application are writing back and forth between the migration's tables.")));
	guard_stack[guard_depth++] = migration_id;
}

void
cu_guard_pop(void)
{
	if (guard_depth > 0)
		guard_depth--;
}

bool
cu_guard_active(int64 migration_id)
{
	int			i;

	for (i = guard_depth - 1; i >= 0; i--)
		if (guard_stack[i] == migration_id)
			return true;
	return false;
}

bool
cu_guard_any(void)
{
	return guard_depth > 0;
}

/* ------------------------------------------------------------- capture */

CuCapture *
cu_capture_push(Oid rel0, Oid rel1, MemoryContext cxt)
{
	CuCapture  *c = MemoryContextAllocZero(cxt, sizeof(CuCapture));

	c->outer = capture;			/* a router nested in a router */
	c->relid[0] = rel0;
	c->relid[1] = rel1;
	c->cxt = cxt;
	capture = c;
	return c;
}

void
cu_capture_pop(CuCapture *c)
{
	capture = c->outer;
}

bool
cu_capture_armed(Oid relid)
{
	return capture != NULL && OidIsValid(relid) &&
		(capture->relid[0] == relid || capture->relid[1] == relid);
}

void
cu_capture_offer(Relation rel, HeapTuple tuple)
{
	Oid			relid = RelationGetRelid(rel);
	int			i;

	if (capture == NULL || tuple == NULL)
		return;
	for (i = 0; i < 2; i++)
	{
		CommandId	cmin;

		if (capture->relid[i] != relid)
			continue;
		cmin = HeapTupleHeaderGetCmin(tuple->t_data);
		if (capture->tuple[i] == NULL || cmin < capture->cmin[i])
		{
			MemoryContext old = MemoryContextSwitchTo(capture->cxt);

			capture->tuple[i] = heap_copytuple(tuple);
			capture->cmin[i] = cmin;
			MemoryContextSwitchTo(old);
		}
	}
}

/* ------------------------------------------------------------ truncate */

void
cu_truncating_set(int64 migration_id, bool on)
{
	truncating_migration = on ? migration_id : 0;
}

bool
cu_truncating(int64 migration_id)
{
	return truncating_migration != 0 && truncating_migration == migration_id;
}

/* -------------------------------------------------- end of transaction */

static void
guard_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		guard_depth = 0;
		cu_engine_depth = 0;
		capture = NULL;
		truncating_migration = 0;
	}
}

void
cu_guard_init(void)
{
	RegisterXactCallback(guard_xact_callback, NULL);
}

/* ------------------------------------------------------- SQL functions */

PG_FUNCTION_INFO_V1(cu_mirror_guard);

/* customer_unify._mirror_guard(migration bigint): in the sync triggers' WHEN clause */
Datum
cu_mirror_guard(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cu_guard_active(PG_GETARG_INT64(0)));
}

PG_FUNCTION_INFO_V1(cu_sync_guard_active);

/* customer_unify._sync_guard_active(): the 1.0 triggers' WHEN clause (any migration) */
Datum
cu_sync_guard_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cu_guard_any());
}

PG_FUNCTION_INFO_V1(cu_engine_active);

/* customer_unify._engine_active(): the event-trigger guard stands aside */
Datum
cu_engine_active(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cu_engine_depth > 0);
}

PG_FUNCTION_INFO_V1(cu_route_capturing);

/* customer_unify._route_capturing(): WHEN clause of the capture triggers after finalize */
Datum
cu_route_capturing(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(capture != NULL);
}
