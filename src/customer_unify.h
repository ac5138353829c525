/*-------------------------------------------------------------------------
 * customer_unify.h
 *	  Declarations shared by the customer_unify C module: the sync loop
 *	  guard, the per-trigger plan cache, and small SPI helpers.
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOMER_UNIFY_H
#define CUSTOMER_UNIFY_H

#include "postgres.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"

/*
 * Sync loop guard: while a mirrored write is running, the sync triggers'
 * WHEN (NOT customer_unify._sync_guard_active()) clause is false, so mirrored
 * rows are neither queued nor mirrored back.
 */
extern int	cu_sync_guard_depth;

/*
 * One cached entry per trigger (by pg_trigger OID).  Each trigger kind keeps
 * its own data behind "data"; the cache only knows how to drop it.
 */
typedef struct CuTriggerCacheEntry
{
	Oid			tgoid;			/* hash key */
	bool		valid;
	MemoryContext cxt;			/* holds data; deleted on rebuild */
	void	   *data;
	List	   *plans;			/* SPIPlanPtr kept with SPI_keepplan */
} CuTriggerCacheEntry;

extern CuTriggerCacheEntry *cu_trigger_cache_lookup(Oid tgoid);
extern void cu_trigger_cache_reset(CuTriggerCacheEntry *entry);
extern SPIPlanPtr cu_prepare_kept(CuTriggerCacheEntry *entry, const char *sql,
								  int nargs, Oid *argtypes);

extern const char *cu_qualified_name(const char *schema, const char *rel);
extern Oid	cu_relid_or_error(const char *schema, const char *rel);
extern AttrNumber cu_attnum_or_error(Relation rel, const char *attname);
extern void cu_check_trigger_call(FunctionCallInfo fcinfo, const char *funcname,
								  bool instead_of);
extern void cu_spi_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
							 int expected_type, const char *what);
extern void cu_sync_trigger_init(void);
extern char *cu_datum_text(Oid type, Datum value);

#endif							/* CUSTOMER_UNIFY_H */
