/*-------------------------------------------------------------------------
 * plan_cache.c
 *	  The per-trigger cache of what a sync trigger or the view router built:
 *	  resolved columns and kept SPI plans, keyed by the trigger's OID.
 *
 *	  An entry records the relations its plans use.  A relcache
 *	  invalidation of one of them invalidates that entry only (autovacuum,
 *	  ANALYZE or DDL elsewhere leave the cache alone); an invalidation of
 *	  every relation (InvalidOid) invalidates every entry.  Plans are freed
 *	  when the entry is rebuilt.  customer_unify._plan_cache_stats() shows
 *	  the entries and how often they were built, for tests.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "customer_unify.h"

static HTAB *cu_cache = NULL;
static int64 cu_cache_builds = 0;
static int64 cu_cache_invalidations = 0;

static void
cu_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CuCacheEntry *entry;

	if (cu_cache == NULL)
		return;
	hash_seq_init(&status, cu_cache);
	while ((entry = (CuCacheEntry *) hash_seq_search(&status)) != NULL)
	{
		int			i;

		if (!entry->valid)
			continue;
		if (!OidIsValid(relid))
		{
			entry->valid = false;
			cu_cache_invalidations++;
			continue;
		}
		for (i = 0; i < entry->nrelids; i++)
			if (entry->relids[i] == relid)
			{
				entry->valid = false;
				cu_cache_invalidations++;
				break;
			}
	}
}

void
cu_plan_cache_init(void)
{
	CacheRegisterRelcacheCallback(cu_relcache_callback, (Datum) 0);
}

CuCacheEntry *
cu_cache_lookup(Oid tgoid)
{
	CuCacheEntry *entry;
	bool		found;

	if (cu_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CuCacheEntry);
		cu_cache = hash_create("customer_unify trigger plans", 16, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	}
	entry = (CuCacheEntry *) hash_search(cu_cache, &tgoid, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->cxt = NULL;
		entry->data = NULL;
		entry->plans = NIL;
		entry->nrelids = 0;
	}
	return entry;
}

/* Drop what an entry holds, ready to be rebuilt. */
void
cu_cache_reset(CuCacheEntry *entry)
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
	entry->nrelids = 0;
	cu_cache_builds++;
}

/* The entry's plans read or write relid: its invalidation invalidates the entry. */
void
cu_cache_depends_on(CuCacheEntry *entry, Oid relid)
{
	int			i;

	for (i = 0; i < entry->nrelids; i++)
		if (entry->relids[i] == relid)
			return;
	if (entry->nrelids >= (int) lengthof(entry->relids))
		elog(ERROR, "customer_unify: a cache entry depends on more than %d relations",
			 (int) lengthof(entry->relids));
	entry->relids[entry->nrelids++] = relid;
}

/* Prepare a statement once and keep it until the entry is rebuilt. */
SPIPlanPtr
cu_prepare_kept(CuCacheEntry *entry, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = cu_prepare_keep(sql, nargs, argtypes);
	MemoryContext old;

	old = MemoryContextSwitchTo(entry->cxt);
	entry->plans = lappend(entry->plans, plan);
	MemoryContextSwitchTo(old);
	return plan;
}

PG_FUNCTION_INFO_V1(cu_plan_cache_stats);

/*
 * customer_unify._plan_cache_stats() -> (entries, valid_entries, plans,
 * builds, invalidations) of this backend.
 */
Datum
cu_plan_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	int64		entries = 0,
				valid = 0,
				plans = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "customer_unify: _plan_cache_stats must return a row");
	if (cu_cache != NULL)
	{
		HASH_SEQ_STATUS status;
		CuCacheEntry *entry;

		hash_seq_init(&status, cu_cache);
		while ((entry = (CuCacheEntry *) hash_seq_search(&status)) != NULL)
		{
			entries++;
			if (entry->valid)
				valid++;
			plans += list_length(entry->plans);
		}
	}
	values[0] = Int64GetDatum(entries);
	values[1] = Int64GetDatum(valid);
	values[2] = Int64GetDatum(plans);
	values[3] = Int64GetDatum(cu_cache_builds);
	values[4] = Int64GetDatum(cu_cache_invalidations);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
