/*-------------------------------------------------------------------------
 * owner_context.c
 *	  Running as another role, the way ri_triggers.c runs a foreign key's
 *	  checks and cascades: SetUserIdAndSecContext with
 *	  SECURITY_LOCAL_USERID_CHANGE (no SET ROLE can undo it) and, for
 *	  integrity maintenance, SECURITY_NOFORCE_RLS (the owner sees every row,
 *	  even under FORCE ROW LEVEL SECURITY).
 *
 *	  Three identities are used by the module:
 *	  - the caller, for the application's own reads and writes;
 *	  - the owner of a migration's tables, for its DDL, its mirrored writes
 *	    (after the caller's write passed its checks), its copy and verify;
 *	  - the extension's owner, for writes to the engine's catalog, which no
 *	    other role may write.
 *	  Acting as a table's owner is allowed to members of that role only, who
 *	  could SET ROLE to it anyway.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "access/genam.h"

#include "customer_unify.h"

void
cu_become(Oid role, bool noforce_rls, CuSavedUser *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(role, save->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   (noforce_rls ? SECURITY_NOFORCE_RLS : 0));
	save->switched = true;
}

void
cu_unbecome(CuSavedUser *save)
{
	if (save->switched)
	{
		SetUserIdAndSecContext(save->userid, save->sec_context);
		save->switched = false;
	}
}

/* pg_extension.extowner of customer_unify */
Oid
cu_extension_owner(void)
{
	static Oid	cached_owner = InvalidOid;
	static Oid	cached_ext = InvalidOid;
	Oid			extoid = get_extension_oid("customer_unify", false);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	if (extoid == cached_ext && OidIsValid(cached_owner))
		return cached_owner;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		elog(ERROR, "customer_unify: extension owner not found");
	cached_ext = extoid;
	cached_owner = owner;
	return owner;
}

Oid
cu_relation_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u used by a customer_unify migration does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* May the caller act as role (a member of it; superusers are members of every role)? */
bool
cu_may_act_as(Oid role)
{
	return is_member_of_role(GetUserId(), role);
}

/*
 * One SPI statement run as another role (InvalidOid: as the caller): a SQL
 * text (plan NULL) or a prepared plan, with optional parameters.
 */
int
cu_spi_as(Oid role, bool noforce_rls, const char *sql, SPIPlanPtr plan, int nargs, Oid *types,
		  Datum *values, const char *nulls, bool read_only, long count)
{
	CuSavedUser save = {0};
	int			rc;

	if (OidIsValid(role))
		cu_become(role, noforce_rls, &save);
	PG_TRY();
	{
		if (plan != NULL)
			rc = SPI_execute_plan(plan, values, nulls, read_only, count);
		else if (nargs > 0)
			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, count);
		else
			rc = SPI_execute(sql, read_only, count);
	}
	PG_FINALLY();
	{
		cu_unbecome(&save);
	}
	PG_END_TRY();
	return rc;
}
