/*-------------------------------------------------------------------------
 * compat_view.c
 *	  The compatibility-view router: an INSTEAD OF ROW trigger on the view
 *	  that keeps the old table's name and columns, routing INSERT, UPDATE
 *	  and DELETE (with RETURNING) to the source and target tables.
 *
 *	  Before finalize ("live" mode) the source still holds the moved
 *	  columns, so they are written to both tables; afterwards ("final")
 *	  only the target holds them.  Writes run under the sync loop guard, so
 *	  the sync triggers do not mirror them a second time.
 *
 *	  UPDATE only assigns the columns the statement changed (a flag per
 *	  column selects the new value or keeps the current one), so a
 *	  concurrent change to another column of the same row is not lost, and
 *	  a table none of whose columns changed is not written at all.  The
 *	  view exists only after cutover, when the link foreign key guarantees
 *	  a target row per source row: target writes are plain INSERT/UPDATE,
 *	  and DELETE removes the source row, the FK cascading to the target.
 *
 *	  Trigger arguments: 0 migration id, 1 mode (live|final),
 *	  2 source schema, 3 source table, 4 key column, 5 target schema,
 *	  6 target table, 7 link column, 8.. moved columns.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "customer_unify.h"

#define ROUTE_FIXED_ARGS 8

typedef struct RouteColumn
{
	AttrNumber	view_attnum;
	bool		moved;			/* lives in the target */
	bool		write_source;	/* written to the source (kept, or moved in live mode) */
	bool		updatable;		/* may appear in the source's UPDATE SET list */
	int			result_index;	/* position in the RETURNING list of its table */
} RouteColumn;

typedef struct Route
{
	int64		migration_id;
	int			ncols;
	RouteColumn *cols;
	int			key_col;		/* index into cols of the source key */
	int			n_src_insert;	/* parameters of source_insert */
	int			n_src_update;	/* columns in source_update's SET list */
	int			n_moved;
	SPIPlanPtr	source_insert;
	SPIPlanPtr	source_update;
	SPIPlanPtr	source_delete;
	SPIPlanPtr	target_insert;
	SPIPlanPtr	target_update;
} Route;

static bool
route_is_moved(Trigger *trigger, const char *name)
{
	int			i;

	for (i = ROUTE_FIXED_ARGS; i < trigger->tgnargs; i++)
		if (strcmp(trigger->tgargs[i], name) == 0)
			return true;
	return false;
}

static Route *
route_build(CuTriggerCacheEntry *entry, TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	char	  **args = trigger->tgargs;
	TupleDesc	vdesc = RelationGetDescr(trigdata->tg_relation);
	bool		live;
	Route	   *route;
	MemoryContext old;
	Relation	src;
	TupleDesc	sdesc;
	StringInfoData sql,
				cols,
				vals,
				ret;
	Oid		   *types;
	int			i,
				n;
	bool		overriding = false;
	const char *srcname,
			   *tgtname;
	Oid			key_type = InvalidOid;

	if (trigger->tgnargs <= ROUTE_FIXED_ARGS)
		elog(ERROR, "customer_unify: trigger \"%s\" has %d arguments, expected more than %d",
			 trigger->tgname, trigger->tgnargs, ROUTE_FIXED_ARGS);
	live = strcmp(args[1], "live") == 0;

	cu_trigger_cache_reset(entry);
	src = table_open(cu_relid_or_error(args[2], args[3]), AccessShareLock);
	sdesc = RelationGetDescr(src);
	(void) cu_relid_or_error(args[5], args[6]);
	srcname = cu_qualified_name(args[2], args[3]);
	tgtname = cu_qualified_name(args[5], args[6]);

	old = MemoryContextSwitchTo(entry->cxt);
	route = palloc0(sizeof(Route));
	route->migration_id = pg_strtoint64(args[0]);
	route->cols = palloc0(sizeof(RouteColumn) * vdesc->natts);
	route->key_col = -1;
	MemoryContextSwitchTo(old);

	initStringInfo(&sql);
	initStringInfo(&cols);
	initStringInfo(&vals);
	initStringInfo(&ret);
	types = palloc(sizeof(Oid) * (2 * vdesc->natts + 2));

	/* classify the view's columns */
	n = 0;
	for (i = 0; i < vdesc->natts; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, i);
		RouteColumn *c;
		const char *name = NameStr(vatt->attname);

		if (vatt->attisdropped)
			continue;
		c = &route->cols[n];
		c->view_attnum = vatt->attnum;
		c->moved = route_is_moved(trigger, name);
		if (!c->moved || live)
		{
			AttrNumber	sattnum = cu_attnum_or_error(src, name);
			Form_pg_attribute satt = TupleDescAttr(sdesc, sattnum - 1);

			c->write_source = satt->attgenerated == '\0';
			c->updatable = c->write_source && satt->attidentity != ATTRIBUTE_IDENTITY_ALWAYS;
			if (satt->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
				overriding = true;
		}
		if (strcmp(name, args[4]) == 0)
		{
			route->key_col = n;
			key_type = vatt->atttypid;
		}
		n++;
	}
	route->ncols = n;
	if (route->key_col < 0)
		elog(ERROR, "customer_unify: view \"%s\" has no column \"%s\"",
			 RelationGetRelationName(trigdata->tg_relation), args[4]);

	/* RETURNING lists: kept columns from the source, moved ones from the target */
	{
		int			nsrc = 0,
					ntgt = 0;

		for (i = 0; i < route->ncols; i++)
			route->cols[i].result_index = route->cols[i].moved ? ntgt++ : nsrc++;
		route->n_moved = ntgt;
	}
	resetStringInfo(&ret);
	for (i = 0; i < route->ncols; i++)
		if (!route->cols[i].moved)
			appendStringInfo(&ret, "%s%s", ret.len ? ", " : "",
							 quote_identifier(NameStr(TupleDescAttr(vdesc, route->cols[i].view_attnum - 1)->attname)));

	/* INSERT INTO source (...) VALUES (...) RETURNING kept columns */
	n = 0;
	for (i = 0; i < route->ncols; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, route->cols[i].view_attnum - 1);

		if (!route->cols[i].write_source)
			continue;
		appendStringInfo(&cols, "%s%s", n ? ", " : "", quote_identifier(NameStr(vatt->attname)));
		appendStringInfo(&vals, "%s$%d", n ? ", " : "", n + 1);
		types[n++] = vatt->atttypid;
	}
	route->n_src_insert = n;
	appendStringInfo(&sql, "INSERT INTO %s (%s)%s VALUES (%s) RETURNING %s", srcname, cols.data,
					 overriding ? " OVERRIDING SYSTEM VALUE" : "", vals.data, ret.data);
	route->source_insert = cu_prepare_kept(entry, sql.data, n, types);

	/* UPDATE ONLY source SET c = CASE WHEN $flag THEN $value ELSE c END ... WHERE key = $1 */
	resetStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE ONLY %s AS s SET ", srcname);
	types[0] = key_type;
	n = 0;
	for (i = 0; i < route->ncols; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, route->cols[i].view_attnum - 1);
		const char *c = quote_identifier(NameStr(vatt->attname));

		if (!route->cols[i].updatable)
			continue;
		appendStringInfo(&sql, "%s%s = CASE WHEN $%d THEN $%d ELSE s.%s END",
						 n ? ", " : "", c, 2 * n + 2, 2 * n + 3, c);
		types[2 * n + 1] = BOOLOID;
		types[2 * n + 2] = vatt->atttypid;
		n++;
	}
	route->n_src_update = n;
	appendStringInfo(&sql, " WHERE s.%s OPERATOR(pg_catalog.=) $1 RETURNING %s", quote_identifier(args[4]), ret.data);
	route->source_update = cu_prepare_kept(entry, sql.data, 2 * n + 1, types);

	/* DELETE: the link foreign key (ON DELETE CASCADE) removes the target row */
	resetStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM ONLY %s WHERE %s OPERATOR(pg_catalog.=) $1", srcname, quote_identifier(args[4]));
	route->source_delete = cu_prepare_kept(entry, sql.data, 1, &key_type);

	/*
	 * The target: the view only exists after cutover, when the link foreign
	 * key guarantees a target row for every source row, so inserts and
	 * updates are plain (no ON CONFLICT), and deletes are the FK's cascade.
	 */
	resetStringInfo(&ret);
	n = 0;
	for (i = 0; i < route->ncols; i++)
		if (route->cols[i].moved)
			appendStringInfo(&ret, "%s%s", n++ ? ", " : "",
							 quote_identifier(NameStr(TupleDescAttr(vdesc, route->cols[i].view_attnum - 1)->attname)));

	resetStringInfo(&sql);
	resetStringInfo(&cols);
	resetStringInfo(&vals);
	types[0] = key_type;
	n = 0;
	for (i = 0; i < route->ncols; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, route->cols[i].view_attnum - 1);

		if (!route->cols[i].moved)
			continue;
		appendStringInfo(&cols, ", %s", quote_identifier(NameStr(vatt->attname)));
		appendStringInfo(&vals, ", $%d", n + 2);
		types[n + 1] = vatt->atttypid;
		n++;
	}
	appendStringInfo(&sql, "INSERT INTO %s (%s%s) VALUES ($1%s) RETURNING %s",
					 tgtname, quote_identifier(args[7]), cols.data, vals.data, ret.data);
	route->target_insert = cu_prepare_kept(entry, sql.data, route->n_moved + 1, types);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE ONLY %s AS t SET ", tgtname);
	types[0] = key_type;
	n = 0;
	for (i = 0; i < route->ncols; i++)
	{
		Form_pg_attribute vatt = TupleDescAttr(vdesc, route->cols[i].view_attnum - 1);
		const char *c = quote_identifier(NameStr(vatt->attname));

		if (!route->cols[i].moved)
			continue;
		appendStringInfo(&sql, "%s%s = CASE WHEN $%d THEN $%d ELSE t.%s END",
						 n ? ", " : "", c, 2 * n + 2, 2 * n + 3, c);
		types[2 * n + 1] = BOOLOID;
		types[2 * n + 2] = vatt->atttypid;
		n++;
	}
	appendStringInfo(&sql, " WHERE t.%s OPERATOR(pg_catalog.=) $1 RETURNING %s", quote_identifier(args[7]), ret.data);
	route->target_update = cu_prepare_kept(entry, sql.data, 2 * route->n_moved + 1, types);

	table_close(src, AccessShareLock);
	pfree(types);
	entry->data = route;
	entry->valid = true;
	return route;
}

static Route *
route_get(TriggerData *trigdata)
{
	CuTriggerCacheEntry *entry = cu_trigger_cache_lookup(trigdata->tg_trigger->tgoid);

	if (entry->valid)
		return (Route *) entry->data;
	{
		void	   *built;

		/* prepared statements need an SPI connection; the kept plans outlive it */
		SPI_connect();
		built = route_build(entry, trigdata);
		SPI_finish();
		return built;
	}
}

static bool
route_changed(Datum a, bool anull, Datum b, bool bnull, Form_pg_attribute att)
{
	if (anull || bnull)
		return anull != bnull;
	return !datumIsEqual(a, b, att->attbyval, att->attlen);
}

/*
 * Parameters $2.. of an UPDATE through the view: a (changed, value) pair per
 * column of one side (the target's moved columns, or the source's updatable
 * ones); $1, the key, is the caller's.  Returns whether any column changed.
 */
static bool
route_update_params(Route *route, TupleDesc vdesc, bool target_side,
					Datum *oldv, bool *oldn, Datum *newv, bool *newn,
					Datum *params, char *pnulls)
{
	bool		any = false;
	int			i,
				n = 0;

	for (i = 0; i < route->ncols; i++)
	{
		AttrNumber	a = route->cols[i].view_attnum - 1;
		bool		changed;

		if (target_side ? !route->cols[i].moved : !route->cols[i].updatable)
			continue;
		changed = route_changed(oldv[a], oldn[a], newv[a], newn[a], TupleDescAttr(vdesc, a));
		any |= changed;
		params[2 * n + 1] = BoolGetDatum(changed);
		pnulls[2 * n + 1] = ' ';
		params[2 * n + 2] = newv[a];
		pnulls[2 * n + 2] = newn[a] ? 'n' : ' ';
		n++;
	}
	pnulls[2 * n + 1] = '\0';
	return any;
}

PG_FUNCTION_INFO_V1(cu_compat_view_route);

Datum
cu_compat_view_route(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	vdesc;
	Route	   *route;
	MemoryContext callercxt = CurrentMemoryContext;
	HeapTuple	result = NULL;
	Datum	   *newv,
			   *oldv,
			   *outv,
			   *params;
	bool	   *newn,
			   *oldn,
			   *outn;
	char	   *pnulls;
	int			i,
				n;

	cu_check_trigger_call(fcinfo, "compat_view_route", true);
	vdesc = RelationGetDescr(trigdata->tg_relation);
	route = route_get(trigdata);

	newv = palloc(sizeof(Datum) * vdesc->natts);
	oldv = palloc(sizeof(Datum) * vdesc->natts);
	outv = palloc0(sizeof(Datum) * vdesc->natts);
	newn = palloc(sizeof(bool) * vdesc->natts);
	oldn = palloc(sizeof(bool) * vdesc->natts);
	outn = palloc(sizeof(bool) * vdesc->natts);
	params = palloc(sizeof(Datum) * (2 * vdesc->natts + 2));
	pnulls = palloc(2 * vdesc->natts + 3);
	for (i = 0; i < vdesc->natts; i++)
		outn[i] = true;

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		bool		isnull;

		params[0] = heap_getattr(trigdata->tg_trigtuple, route->cols[route->key_col].view_attnum, vdesc, &isnull);
		pnulls[0] = isnull ? 'n' : ' ';
		pnulls[1] = '\0';
		SPI_connect();
		cu_sync_guard_depth++;
		PG_TRY();
		{
			cu_spi_exec_plan(route->source_delete, params, pnulls, SPI_OK_DELETE, "deleting through the view");
			n = SPI_processed;
		}
		PG_FINALLY();
		{
			cu_sync_guard_depth--;
		}
		PG_END_TRY();
		SPI_finish();
		return PointerGetDatum(n > 0 ? trigdata->tg_trigtuple : NULL);
	}

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		heap_deform_tuple(trigdata->tg_trigtuple, vdesc, newv, newn);
	else
	{
		heap_deform_tuple(trigdata->tg_trigtuple, vdesc, oldv, oldn);
		heap_deform_tuple(trigdata->tg_newtuple, vdesc, newv, newn);
	}

	SPI_connect();
	cu_sync_guard_depth++;
	PG_TRY();
	{
		SPITupleTable *srcres = NULL;
		SPITupleTable *tgtres = NULL;
		bool		is_insert = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		bool		gone = false;
		Datum		link;
		bool		linknull;

		if (is_insert)
		{
			n = 0;
			for (i = 0; i < route->ncols; i++)
			{
				AttrNumber	a = route->cols[i].view_attnum - 1;

				if (!route->cols[i].write_source)
					continue;
				params[n] = newv[a];
				pnulls[n++] = newn[a] ? 'n' : ' ';
			}
			pnulls[n] = '\0';
			cu_spi_exec_plan(route->source_insert, params, pnulls, SPI_OK_INSERT_RETURNING,
							 "inserting through the view");
			srcres = SPI_tuptable;
			gone = SPI_processed == 0;	/* a BEFORE trigger of the source skipped it */
			if (!gone)
			{
				/* the key as stored (defaults and the source's own triggers applied) */
				link = SPI_getbinval(srcres->vals[0], srcres->tupdesc,
									 route->cols[route->key_col].result_index + 1, &linknull);
				params[0] = link;
				pnulls[0] = linknull ? 'n' : ' ';
				n = 0;
				for (i = 0; i < route->ncols; i++)
				{
					AttrNumber	a = route->cols[i].view_attnum - 1;

					if (!route->cols[i].moved)
						continue;
					params[n + 1] = newv[a];
					pnulls[n + 1] = newn[a] ? 'n' : ' ';
					n++;
				}
				pnulls[n + 1] = '\0';
				cu_spi_exec_plan(route->target_insert, params, pnulls, SPI_OK_INSERT_RETURNING,
								 "inserting into the target through the view");
				tgtres = SPI_tuptable;
			}
		}
		else
		{
			AttrNumber	ka = route->cols[route->key_col].view_attnum - 1;
			bool		src_changed;
			bool		tgt_changed;

			/* only the tables whose columns the statement changed are written */
			params[0] = oldv[ka];
			pnulls[0] = oldn[ka] ? 'n' : ' ';
			src_changed = route_update_params(route, vdesc, false, oldv, oldn, newv, newn, params, pnulls);
			if (src_changed)
			{
				cu_spi_exec_plan(route->source_update, params, pnulls, SPI_OK_UPDATE_RETURNING,
								 "updating through the view");
				srcres = SPI_tuptable;
				gone = SPI_processed == 0;
			}

			if (!gone)
			{
				/* the link follows the key (ON UPDATE CASCADE has moved it already) */
				link = srcres ? SPI_getbinval(srcres->vals[0], srcres->tupdesc,
											  route->cols[route->key_col].result_index + 1, &linknull)
					: newv[ka];
				linknull = srcres ? linknull : newn[ka];
				params[0] = link;
				pnulls[0] = linknull ? 'n' : ' ';
				tgt_changed = route_update_params(route, vdesc, true, oldv, oldn, newv, newn, params, pnulls);
				if (tgt_changed)
				{
					cu_spi_exec_plan(route->target_update, params, pnulls, SPI_OK_UPDATE_RETURNING,
									 "updating the target through the view");
					tgtres = SPI_tuptable;
					if (SPI_processed == 0 && srcres == NULL)
						gone = true;	/* the row was deleted meanwhile */
					else if (SPI_processed == 0)
						tgtres = NULL;
				}
			}
		}

		if (!gone)
		{
			/* what RETURNING shows: the stored values where a table was written, else NEW */
			for (i = 0; i < route->ncols; i++)
			{
				RouteColumn *c = &route->cols[i];
				SPITupleTable *t = c->moved ? tgtres : srcres;
				AttrNumber	a = c->view_attnum - 1;

				if (t != NULL)
					outv[a] = SPI_getbinval(t->vals[0], t->tupdesc, c->result_index + 1, &outn[a]);
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
		cu_sync_guard_depth--;
	}
	PG_END_TRY();
	SPI_finish();

	return PointerGetDatum(result);
}
