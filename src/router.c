/*-------------------------------------------------------------------------
 * router.c
 *	  The compatibility-view router: the INSTEAD OF row trigger of a view
 *	  with the old table's name and columns, routing INSERT, UPDATE and
 *	  DELETE (with RETURNING) to the tables of the new shape.  Its map
 *	  (customer_unify.sync_map, name 'route') says which columns moved to
 *	  the target and whether the migration is finalized.
 *
 *	  Before finalize ("live") the source still holds every column and is
 *	  kept in sync: the router writes the source only, and the sync trigger
 *	  mirrors the write into the target, with the values the source stored
 *	  (its BEFORE triggers applied).  After finalize ("final") kept columns
 *	  go to the source and moved ones to the target.
 *
 *	  The application's write obeys the rules the old table had: it runs as
 *	  the caller, so privileges and row-level security apply.  The view
 *	  carries the old table's table and column privileges, and PostgreSQL
 *	  checks those for the columns the statement names; so a column the
 *	  caller may not insert cannot have been named, and the router leaves it
 *	  out (the table's default applies), and an UPDATE assigns exactly the
 *	  columns the statement changed.  The statements for each set of columns
 *	  are prepared once and kept.  After finalize, the target's companion
 *	  row is created as the target's owner (integrity maintenance), with the
 *	  moved values the caller may write.
 *
 *	  What RETURNING shows is the row as stored.  The router does not ask
 *	  for it with RETURNING (that would need SELECT rights and pass SELECT
 *	  policies the old table's INSERT never asked for): the AFTER row
 *	  triggers of the tables written hand over the version the router's
 *	  statement stored (guard.c's capture).  A trigger of 1.0 after finalize
 *	  has no capture trigger beside it, and uses RETURNING as 1.0 did.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define LEGACY_ROUTE_FIXED_ARGS 8
#define ROUTE_MAX_PLANS 256

typedef enum RouteOp
{
	ROUTE_SOURCE_INSERT,
	ROUTE_SOURCE_UPDATE,
	ROUTE_SOURCE_DELETE,
	ROUTE_SOURCE_LOCK,
	ROUTE_TARGET_INSERT,
	ROUTE_TARGET_UPDATE,
	ROUTE_TARGET_FILL
} RouteOp;

typedef struct RouteColumn
{
	AttrNumber	view_attnum;
	bool		moved;			/* in the target after finalize */
	bool		in_target;		/* written to the target (moved and final) */
	AttrNumber	base_attnum;	/* in the table it is written to */
	const char *base_name;		/* quoted */
	Oid			type;
	bool		writable;		/* not a generated column */
	bool		identity;		/* an identity column of its table */
	bool		identity_always;
	int			ret_index;		/* position in its table's RETURNING list (legacy final) */
} RouteColumn;

typedef struct RoutePlan
{
	RouteOp		op;
	Bitmapset  *mask;
	SPIPlanPtr	plan;
} RoutePlan;

typedef struct Route
{
	int64		migration_id;
	bool		final;
	bool		legacy;			/* a 1.0 trigger */
	bool		use_returning;	/* 1.0 after finalize: no capture trigger */
	Oid			source_relid;
	Oid			target_relid;
	Oid			target_owner;
	const char *source_name;
	const char *target_name;
	TupleDesc	source_desc;	/* copies, valid as long as the entry is */
	TupleDesc	target_desc;
	const char *key_name;		/* quoted, in the source */
	const char *link_name;		/* quoted, in the target */
	CuKeyType	key;
	CuKeyType	link;
	int			ncols;
	RouteColumn *cols;
	int			key_col;
	Bitmapset  *kept;			/* route columns written to the source */
	Bitmapset  *target_cols;	/* route columns written to the target */
	Bitmapset  *writable;
	char	   *ret_source;		/* RETURNING lists (legacy final) */
	char	   *ret_target;
	List	   *plans;
	CuCacheEntry *entry;
} Route;

/* What a route is built from: a catalog map or a 1.0 trigger's arguments. */
typedef struct RouteSpec
{
	int64		migration_id;
	bool		final;
	bool		legacy;
	Oid			source_relid;
	Oid			target_relid;
	const char *key;
	const char *link;
	int			nmoved;
	const char **moved_source;	/* names in the source (= view column names) */
	const char **moved_target;	/* names in the target */
} RouteSpec;

static int
route_moved_index(RouteSpec *spec, const char *name)
{
	int			i;

	for (i = 0; i < spec->nmoved; i++)
		if (strcmp(spec->moved_source[i], name) == 0)
			return i;
	return -1;
}

static Route *
route_build(CuCacheEntry *entry, TriggerData *trigdata, RouteSpec *spec)
{
	TupleDesc	vdesc = RelationGetDescr(trigdata->tg_relation);
	Relation	src,
				tgt;
	Route	   *r;
	MemoryContext old;
	StringInfoData rs,
				rt;
	int			i,
				n;

	src = table_open(spec->source_relid, AccessShareLock);
	tgt = table_open(spec->target_relid, AccessShareLock);
	/*
	 * The router writes as the tables' owner: only a view made with the
	 * owner's rights may carry it (not a view of another role that names
	 * this migration's map or tables).
	 */
	if (!is_member_of_role(trigdata->tg_relation->rd_rel->relowner, src->rd_rel->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" may not route writes to \"%s\"",
						trigdata->tg_trigger->tgname, RelationGetRelationName(trigdata->tg_relation),
						RelationGetRelationName(src)),
				 errdetail("The view is not owned by the owner of \"%s\" (or a member of that role).",
						   RelationGetRelationName(src))));
	cu_cache_depends_on(entry, RelationGetRelid(trigdata->tg_relation));
	cu_cache_depends_on(entry, spec->source_relid);
	cu_cache_depends_on(entry, spec->target_relid);

	old = MemoryContextSwitchTo(entry->cxt);
	r = palloc0(sizeof(Route));
	r->entry = entry;
	r->migration_id = spec->migration_id;
	r->final = spec->final;
	r->legacy = spec->legacy;
	r->use_returning = spec->legacy && spec->final;
	r->source_relid = spec->source_relid;
	r->target_relid = spec->target_relid;
	r->target_owner = tgt->rd_rel->relowner;
	r->source_desc = CreateTupleDescCopy(RelationGetDescr(src));
	r->target_desc = CreateTupleDescCopy(RelationGetDescr(tgt));
	r->source_name = pstrdup(cu_relation_qualified_name(spec->source_relid));
	r->target_name = pstrdup(cu_relation_qualified_name(spec->target_relid));
	r->key_name = pstrdup(quote_identifier(spec->key));
	r->link_name = pstrdup(quote_identifier(spec->link));
	cu_key_type_for_column(src, cu_attnum_or_error(src, spec->key), &r->key);
	cu_key_type_for_column(tgt, cu_attnum_or_error(tgt, spec->link), &r->link);
	r->cols = palloc0(sizeof(RouteColumn) * vdesc->natts);
	r->key_col = -1;
	initStringInfo(&rs);
	initStringInfo(&rt);

	n = 0;
	for (i = 0; i < vdesc->natts; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, i);
		RouteColumn *c;
		const char *name = NameStr(vatt->attname);
		int			mi;
		Relation	base;
		Form_pg_attribute batt;

		if (vatt->attisdropped)
			continue;
		c = &r->cols[n];
		c->view_attnum = vatt->attnum;
		c->type = vatt->atttypid;
		mi = route_moved_index(spec, name);
		c->moved = mi >= 0;
		c->in_target = c->moved && spec->final;
		base = c->in_target ? tgt : src;
		c->base_attnum = cu_attnum_or_error(base, c->in_target ? spec->moved_target[mi] : name);
		batt = TupleDescAttr(RelationGetDescr(base), c->base_attnum - 1);
		c->base_name = pstrdup(quote_identifier(NameStr(batt->attname)));
		c->writable = batt->attgenerated == '\0';
		c->identity = batt->attidentity != '\0';
		c->identity_always = batt->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;
		if (c->writable)
			r->writable = bms_add_member(r->writable, n);
		if (c->in_target)
		{
			r->target_cols = bms_add_member(r->target_cols, n);
			c->ret_index = 0;
			appendStringInfo(&rt, "%s%s", rt.len ? ", " : "", c->base_name);
		}
		else
		{
			r->kept = bms_add_member(r->kept, n);
			appendStringInfo(&rs, "%s%s", rs.len ? ", " : "", c->base_name);
		}
		if (strcmp(name, spec->key) == 0)
			r->key_col = n;
		n++;
	}
	r->ncols = n;
	/* positions in the RETURNING lists, for 1.0 after finalize */
	{
		int			ns = 0,
					nt = 0;

		for (i = 0; i < r->ncols; i++)
			r->cols[i].ret_index = r->cols[i].in_target ? ++nt : ++ns;
	}
	r->ret_source = rs.data;
	r->ret_target = rt.data;
	MemoryContextSwitchTo(old);

	table_close(tgt, AccessShareLock);
	table_close(src, AccessShareLock);
	if (r->key_col < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("compatibility view \"%s\" has no column \"%s\"",
						RelationGetRelationName(trigdata->tg_relation), spec->key)));
	entry->data = r;
	entry->valid = true;
	return r;
}

static Route *
route_build_from_map(CuCacheEntry *entry, TriggerData *trigdata)
{
	int64		map_id = cu_trigger_map_id(trigdata);
	CuMap		map;
	RouteSpec	spec;
	MemoryContext old = MemoryContextSwitchTo(entry->cxt);

	cu_map_load(map_id, &map, false);
	MemoryContextSwitchTo(old);
	if (cu_relation_by_tag(map.migration_id, "view", true) != RelationGetRelid(trigdata->tg_relation))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" is on \"%s\", but route map %lld routes the compatibility view of migration \"%s\"",
						trigdata->tg_trigger->tgname, RelationGetRelationName(trigdata->tg_relation),
						(long long) map_id, map.migration_name)));
	spec.migration_id = map.migration_id;
	spec.final = map.final;
	spec.legacy = false;
	spec.source_relid = map.from_relid;
	spec.target_relid = map.to_relid;
	spec.key = map.from_key;
	spec.link = map.to_key;
	spec.nmoved = map.ncols;
	spec.moved_source = map.from_columns;
	spec.moved_target = map.to_columns;
	return route_build(entry, trigdata, &spec);
}

/*
 * 1.0 trigger arguments: 0 migration id, 1 mode (live|final), 2 source
 * schema, 3 source table, 4 key column, 5 target schema, 6 target table,
 * 7 link column, 8.. moved columns.
 */
static Route *
route_build_legacy(CuCacheEntry *entry, TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	char	  **args = trigger->tgargs;
	RouteSpec	spec;

	if (trigger->tgnargs <= LEGACY_ROUTE_FIXED_ARGS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" has %d arguments, expected more than %d",
						trigger->tgname, trigger->tgnargs, LEGACY_ROUTE_FIXED_ARGS)));
	spec.migration_id = pg_strtoint64(args[0]);
	spec.final = strcmp(args[1], "final") == 0;
	spec.legacy = true;
	spec.source_relid = cu_relid_or_error(args[2], args[3]);
	spec.key = args[4];
	spec.target_relid = cu_relid_or_error(args[5], args[6]);
	spec.link = args[7];
	spec.nmoved = trigger->tgnargs - LEGACY_ROUTE_FIXED_ARGS;
	/* 1.0 moved columns keep their names */
	spec.moved_source = spec.moved_target = (const char **) &args[LEGACY_ROUTE_FIXED_ARGS];
	return route_build(entry, trigdata, &spec);
}

static Route *
route_get(TriggerData *trigdata, bool legacy)
{
	CuCacheEntry *entry = cu_cache_lookup(trigdata->tg_trigger->tgoid);
	Route	   *built;

	if (entry->valid)
		return (Route *) entry->data;
	cu_cache_reset(entry);
	/* prepared statements need an SPI connection; the kept plans outlive it */
	SPI_connect();
	built = legacy ? route_build_legacy(entry, trigdata) : route_build_from_map(entry, trigdata);
	SPI_finish();
	return built;
}

/* ------------------------------------------------------------ statements */

static bool
route_op_returns(Route *r, RouteOp op)
{
	return r->use_returning &&
		(op == ROUTE_SOURCE_INSERT || op == ROUTE_SOURCE_UPDATE ||
		 op == ROUTE_TARGET_INSERT || op == ROUTE_TARGET_UPDATE || op == ROUTE_TARGET_FILL);
}

/* The statement of op for the route columns in mask; parameters in column order, key first. */
static char *
route_statement(Route *r, RouteOp op, Bitmapset *mask, Oid *types, int *nparams)
{
	StringInfoData sql,
				cols,
				vals;
	int			i = -1;
	int			n = 0;
	bool		overriding = false;
	bool		target = op >= ROUTE_TARGET_INSERT;
	const char *rel = target ? r->target_name : r->source_name;

	initStringInfo(&sql);
	initStringInfo(&cols);
	initStringInfo(&vals);

	switch (op)
	{
		case ROUTE_SOURCE_INSERT:
			while ((i = bms_next_member(mask, i)) >= 0)
			{
				RouteColumn *c = &r->cols[i];

				appendStringInfo(&cols, "%s%s", n ? ", " : "", c->base_name);
				appendStringInfo(&vals, "%s$%d", n ? ", " : "", n + 1);
				types[n++] = c->type;
				/* 1.0's views default an identity to its sequence: override */
				overriding |= c->identity_always && r->legacy;
			}
			if (n == 0)
				appendStringInfo(&sql, "INSERT INTO %s DEFAULT VALUES", rel);
			else
				appendStringInfo(&sql, "INSERT INTO %s (%s)%s VALUES (%s)", rel, cols.data,
								 overriding ? " OVERRIDING SYSTEM VALUE" : "", vals.data);
			break;
		case ROUTE_TARGET_INSERT:
		case ROUTE_TARGET_FILL:
			types[n++] = r->link.type;
			while ((i = bms_next_member(mask, i)) >= 0)
			{
				RouteColumn *c = &r->cols[i];

				appendStringInfo(&cols, ", %s", c->base_name);
				appendStringInfo(&vals, ", $%d", n + 1);
				types[n++] = c->type;
			}
			appendStringInfo(&sql, "INSERT INTO %s (%s%s) VALUES ($1%s)", rel, r->link_name,
							 cols.data, vals.data);
			if (op == ROUTE_TARGET_FILL)
				appendStringInfo(&sql, " ON CONFLICT (%s) DO NOTHING", r->link_name);
			break;
		case ROUTE_SOURCE_UPDATE:
		case ROUTE_TARGET_UPDATE:
			types[n++] = target ? r->link.type : r->key.type;
			appendStringInfo(&sql, "UPDATE ONLY %s SET ", rel);
			while ((i = bms_next_member(mask, i)) >= 0)
			{
				RouteColumn *c = &r->cols[i];

				appendStringInfo(&sql, "%s%s = $%d", n > 1 ? ", " : "", c->base_name, n + 1);
				types[n++] = c->type;
			}
			appendStringInfo(&sql, " WHERE %s %s $1", target ? r->link_name : r->key_name,
							 target ? r->link.eq : r->key.eq);
			break;
		case ROUTE_SOURCE_DELETE:
			types[n++] = r->key.type;
			appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s %s $1", rel, r->key_name, r->key.eq);
			break;
		case ROUTE_SOURCE_LOCK:
			types[n++] = r->key.type;
			appendStringInfo(&sql, "SELECT 1 FROM ONLY %s WHERE %s %s $1 FOR NO KEY UPDATE",
							 rel, r->key_name, r->key.eq);
			break;
	}
	if (route_op_returns(r, op))
		appendStringInfo(&sql, " RETURNING %s", target ? r->ret_target : r->ret_source);
	*nparams = n;
	return sql.data;
}

static SPIPlanPtr
route_plan(Route *r, RouteOp op, Bitmapset *mask)
{
	ListCell   *lc;
	RoutePlan  *p;
	Oid		   *types;
	int			nparams;
	char	   *sql;
	MemoryContext old;

	foreach(lc, r->plans)
	{
		p = (RoutePlan *) lfirst(lc);
		if (p->op == op && bms_equal(p->mask, mask))
			return p->plan;
	}
	if (list_length(r->plans) >= ROUTE_MAX_PLANS)
	{
		/* far more column sets than any application uses: start over */
		foreach(lc, r->plans)
			SPI_freeplan(((RoutePlan *) lfirst(lc))->plan);
		r->plans = NIL;
	}
	types = palloc(sizeof(Oid) * (r->ncols + 2));
	sql = route_statement(r, op, mask, types, &nparams);
	old = MemoryContextSwitchTo(r->entry->cxt);
	p = palloc(sizeof(RoutePlan));
	p->op = op;
	p->mask = bms_copy(mask);
	MemoryContextSwitchTo(old);
	p->plan = cu_prepare_keep(sql, nparams, types);
	old = MemoryContextSwitchTo(r->entry->cxt);
	r->plans = lappend(r->plans, p);
	MemoryContextSwitchTo(old);
	return p->plan;
}

/* ------------------------------------------------------------ execution */

/* The row a write stored: a captured heap tuple, or a RETURNING row (1.0 final). */
typedef struct StoredRow
{
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		returning;
} StoredRow;

/*
 * Execute op for mask with the key (if the op takes one) and the NEW values
 * of the columns in mask; as the target's owner when as_owner.  Returns the
 * number of rows processed.
 */
static uint64
route_exec(Route *r, RouteOp op, Bitmapset *mask, Datum key, bool keynull,
		   Datum *newv, bool *newn, bool as_owner, StoredRow *stored, int capture_slot,
		   CuCapture *capture)
{
	SPIPlanPtr	plan = route_plan(r, op, mask);
	int			nargs = SPI_getargcount(plan);
	Datum	   *values = palloc(sizeof(Datum) * (nargs + 1));
	char	   *nulls = palloc(nargs + 1);
	int			n = 0;
	int			i = -1;
	int			rc;

	if (op != ROUTE_SOURCE_INSERT)
	{
		values[n] = key;
		nulls[n++] = keynull ? 'n' : ' ';
	}
	while ((i = bms_next_member(mask, i)) >= 0)
	{
		AttrNumber	a = r->cols[i].view_attnum - 1;

		values[n] = newv[a];
		nulls[n++] = newn[a] ? 'n' : ' ';
	}
	nulls[n] = '\0';

	if (as_owner)
		rc = cu_spi_as(r->target_owner, true, NULL, plan, 0, NULL, values, nulls, false, 0);
	else
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "customer_unify: writing through the compatibility view failed: %s",
			 SPI_result_code_string(rc));

	if (stored != NULL && SPI_processed > 0)
	{
		if (route_op_returns(r, op) && SPI_tuptable != NULL)
		{
			stored->tuple = SPI_tuptable->vals[0];
			stored->desc = SPI_tuptable->tupdesc;
			stored->returning = true;
		}
		else if (capture != NULL && capture->tuple[capture_slot] != NULL)
		{
			stored->tuple = capture->tuple[capture_slot];
			stored->desc = capture_slot == 0 ? r->source_desc : r->target_desc;
			stored->returning = false;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("customer_unify: the trigger that reports the stored row of \"%s\" did not fire",
							get_rel_name(capture_slot == 0 ? r->source_relid : r->target_relid)),
					 errhint("Do not disable the customer_unify triggers of a migration's tables.")));
	}
	return SPI_processed;
}

/* The value of route column i in a stored row. */
static Datum
route_stored_value(Route *r, StoredRow *s, int i, bool *isnull)
{
	RouteColumn *c = &r->cols[i];

	return heap_getattr(s->tuple, s->returning ? c->ret_index : c->base_attnum, s->desc, isnull);
}

static bool
route_changed(Datum a, bool anull, Datum b, bool bnull, Form_pg_attribute att)
{
	if (anull || bnull)
		return anull != bnull;
	return !datumIsEqual(a, b, att->attbyval, att->attlen);
}

/*
 * An UPDATE through the view found no target row: the source row was
 * created without one after finalize.  Create the companion row (as the
 * owner: integrity maintenance), then apply the caller's UPDATE to it as the
 * caller, so that the row-level security the target copied from the source
 * decides, as it would have on the old table.  Refused (no row updated): the
 * subtransaction run by the caller is rolled back, companion row included.
 */
typedef struct RouteFill
{
	Route	   *r;
	Bitmapset  *tmask;
	Datum		key;
	bool		knull;
	Datum	   *newv;
	bool	   *newn;
	StoredRow  *tgt;
	CuCapture  *capture;
	bool		refused;		/* out */
} RouteFill;

static void
route_fill(void *arg)
{
	RouteFill  *f = (RouteFill *) arg;

	(void) route_exec(f->r, ROUTE_TARGET_FILL, f->r->target_cols, f->key, f->knull, f->newv, f->newn,
					  true, f->tgt, 1, f->capture);
	if (route_exec(f->r, ROUTE_TARGET_UPDATE, f->tmask, f->key, f->knull, f->newv, f->newn,
				   false, f->tgt, 1, f->capture) == 0)
	{
		f->refused = true;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("customer_unify: the companion row's update was not allowed")));
	}
}

/* The columns the caller may name in an INSERT into the view. */
static Bitmapset *
route_insertable(Route *r, Oid viewid)
{
	Oid			user = GetUserId();
	Bitmapset  *mask = NULL;
	int			i;

	if (pg_class_aclcheck(viewid, user, ACL_INSERT) == ACLCHECK_OK)
		return bms_copy(r->writable);
	for (i = 0; i < r->ncols; i++)
		if (bms_is_member(i, r->writable) &&
			pg_attribute_aclcheck(viewid, r->cols[i].view_attnum, user, ACL_INSERT) == ACLCHECK_OK)
			mask = bms_add_member(mask, i);
	return mask;
}

static Datum
route_row(FunctionCallInfo fcinfo, bool legacy)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	vdesc;
	Route	   *r;
	MemoryContext callercxt = CurrentMemoryContext;
	HeapTuple	result = NULL;
	Datum	   *newv,
			   *oldv,
			   *outv;
	bool	   *newn,
			   *oldn,
			   *outn;
	int			i;
	CuCapture  *capture;
	StoredRow	src = {0},
				tgt = {0};

	cu_check_trigger_call(fcinfo, "compat_route", true, true);
	vdesc = RelationGetDescr(trigdata->tg_relation);
	r = route_get(trigdata, legacy);

	newv = palloc(sizeof(Datum) * vdesc->natts);
	oldv = palloc(sizeof(Datum) * vdesc->natts);
	outv = palloc0(sizeof(Datum) * vdesc->natts);
	newn = palloc(sizeof(bool) * vdesc->natts);
	oldn = palloc(sizeof(bool) * vdesc->natts);
	outn = palloc(sizeof(bool) * vdesc->natts);
	for (i = 0; i < vdesc->natts; i++)
		outn[i] = true;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		heap_deform_tuple(trigdata->tg_trigtuple, vdesc, newv, newn);
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		heap_deform_tuple(trigdata->tg_trigtuple, vdesc, oldv, oldn);
		heap_deform_tuple(trigdata->tg_newtuple, vdesc, newv, newn);
	}
	else
		heap_deform_tuple(trigdata->tg_trigtuple, vdesc, oldv, oldn);

	capture = cu_capture_push(r->source_relid, r->target_relid, callercxt);
	SPI_connect();
	PG_TRY();
	{
		AttrNumber	ka = r->cols[r->key_col].view_attnum - 1;
		bool		gone = false;

		if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		{
			/* the link foreign key (ON DELETE CASCADE) removes the target row */
			gone = route_exec(r, ROUTE_SOURCE_DELETE, NULL, oldv[ka], oldn[ka], NULL, NULL,
							  false, NULL, 0, NULL) == 0;
			if (!gone)
				result = trigdata->tg_trigtuple;
		}
		else if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		{
			Bitmapset  *allowed = route_insertable(r, RelationGetRelid(trigdata->tg_relation));
			Bitmapset  *smask = bms_intersect(allowed, r->kept);

			/*
			 * An identity column given no value (the view has no default for
			 * it) is left out: the table generates it, as an INSERT into the
			 * old table that did not name it.  A value given is passed on, and
			 * GENERATED ALWAYS refuses it as the table does.
			 */
			if (!r->legacy)
				for (i = 0; i < r->ncols; i++)
					if (r->cols[i].identity && newn[r->cols[i].view_attnum - 1])
						smask = bms_del_member(smask, i);

			gone = route_exec(r, ROUTE_SOURCE_INSERT, smask, (Datum) 0, true, newv, newn,
							  false, &src, 0, capture) == 0;	/* a BEFORE trigger skipped it */
			if (!gone && r->final)
			{
				bool		knull;
				Datum		key = route_stored_value(r, &src, r->key_col, &knull);

				(void) route_exec(r, ROUTE_TARGET_INSERT, bms_intersect(allowed, r->target_cols),
								  key, knull, newv, newn, true, &tgt, 1, capture);
			}
		}
		else
		{
			Bitmapset  *changed = NULL;
			Bitmapset  *smask,
					   *tmask;
			Datum		key = oldv[ka];
			bool		knull = oldn[ka];

			for (i = 0; i < r->ncols; i++)
			{
				AttrNumber	a = r->cols[i].view_attnum - 1;

				if (route_changed(oldv[a], oldn[a], newv[a], newn[a], TupleDescAttr(vdesc, a)))
					changed = bms_add_member(changed, i);
			}
			smask = bms_intersect(changed, r->kept);
			tmask = bms_intersect(changed, r->target_cols);

			if (!bms_is_empty(smask))
			{
				gone = route_exec(r, ROUTE_SOURCE_UPDATE, smask, key, knull, newv, newn,
								  false, &src, 0, capture) == 0;
				if (!gone)
					key = route_stored_value(r, &src, r->key_col, &knull);
			}
			/*
			 * Only moved columns changed: take the source row's lock first, as
			 * an UPDATE of the old table would have, so that the write waits
			 * for a SELECT ... FOR UPDATE through the view (which locks the
			 * source row) and the other way round.  As the tables' owner: the
			 * caller's rights are on the view's columns, which now live in the
			 * target.
			 */
			if (!gone && !bms_is_empty(tmask) && bms_is_empty(smask))
				gone = route_exec(r, ROUTE_SOURCE_LOCK, NULL, key, knull, NULL, NULL,
								  true, NULL, 0, NULL) == 0;
			if (!gone && !bms_is_empty(tmask))
			{
				if (route_exec(r, ROUTE_TARGET_UPDATE, tmask, key, knull, newv, newn,
							   false, &tgt, 1, capture) == 0)
				{
					RouteFill	fill = {r, tmask, key, knull, newv, newn, &tgt, capture, false};
					ErrorData  *edata = cu_subxact(route_fill, &fill);

					if (edata != NULL && !fill.refused)
						ReThrowError(edata);
					gone = edata != NULL;
				}
			}
		}

		if (!gone && result == NULL)
		{
			/* what RETURNING shows: the stored values where a table was written, else NEW */
			for (i = 0; i < r->ncols; i++)
			{
				RouteColumn *c = &r->cols[i];
				StoredRow  *s = c->in_target ? &tgt : &src;
				AttrNumber	a = c->view_attnum - 1;

				if (s->tuple != NULL)
					outv[a] = route_stored_value(r, s, i, &outn[a]);
				else
				{
					outv[a] = newv[a];
					outn[a] = newn[a];
				}
			}
			{
				MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

				result = heap_form_tuple(vdesc, outv, outn);
				MemoryContextSwitchTo(spicxt);
			}
		}
	}
	PG_FINALLY();
	{
		cu_capture_pop(capture);
	}
	PG_END_TRY();
	SPI_finish();

	return PointerGetDatum(result);
}

PG_FUNCTION_INFO_V1(cu_compat_route);

/* customer_unify.compat_route(map id): INSTEAD OF INSERT OR UPDATE OR DELETE ... FOR EACH ROW */
Datum
cu_compat_route(PG_FUNCTION_ARGS)
{
	return route_row(fcinfo, false);
}

PG_FUNCTION_INFO_V1(cu_compat_view_route);

/* 1.0: customer_unify.compat_view_route(...) */
Datum
cu_compat_view_route(PG_FUNCTION_ARGS)
{
	return route_row(fcinfo, true);
}
