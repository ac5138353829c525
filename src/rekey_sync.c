/*-------------------------------------------------------------------------
 * rekey_sync.c
 *	  The rekey's sync trigger: customer_unify.rekey_sync().
 *
 *	  While a rekey is live, a child table carries its old key (the parent
 *	  link, user_ptr_id) and the two columns of its new shape (its own key
 *	  id and the link user_id), and applications of both shapes write it:
 *	  the old one names only the parent link, the new one only the link (and
 *	  lets the key be generated).  Until finalize the three hold one value,
 *	  so that a reference written by either application means the same row.
 *	  This BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger keeps them so:
 *
 *	    INSERT: the parent link from the link and the link from the parent
 *	            link where one is missing, the key from them where missing;
 *	    UPDATE: a change of one of parent link and link carries to the
 *	            other, and to the key when it was not itself changed;
 *	    then the three must be equal (where set): anything else is refused
 *	    with 23514, before the row is stored.
 *
 *	  On a history table (django-simple-history's historical rows of the
 *	  child) the same three columns are kept, and a row written without the
 *	  columns its old shape copied from the parent (username, email, ...)
 *	  gets them from the parent row its link names, as the old application
 *	  would have written them.  The parent is read as the writer, with
 *	  its privileges and row-level security: a history row it can read
 *	  back shows nothing of the parent it could not read itself.  A column
 *	  the parent no longer has is left as written.
 *
 *	  Trigger arguments (made by the rekey's start step from the catalog):
 *	    1. the parent link column, 2. the new key column, 3. the link column;
 *	    on a history table also 4. the parent's OID, 5. the parent's key
 *	    column, 6... the columns filled from the parent (the same names in
 *	    both tables).
 *
 *	  The keys are integers (int2, int4, int8; the rekey validates that),
 *	  compared as such.  The trigger carries no SET search_path (a GUC
 *	  save per row); the one statement it runs, on the history path, names
 *	  the parent, its columns, the types and the operator qualified.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "customer_unify.h"

/* The integer value of a key datum of type typid. */
static int64
rekey_int(Datum d, Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		case INT8OID:
			return DatumGetInt64(d);
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("customer_unify.rekey_sync(): keys of type %s are not supported", format_type_be(typid)),
					 errhint("The rekey keeps smallint, integer and bigint keys.")));
	}
	return 0;					/* not reached */
}

/* A key datum of type typid holding v (v fits: it came from a key of the same type). */
static Datum
rekey_datum(int64 v, Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return Int16GetDatum((int16) v);
		case INT4OID:
			return Int32GetDatum((int32) v);
		default:
			return Int64GetDatum(v);
	}
}

static int
rekey_attnum(Relation rel, const char *column, const char *trigger)
{
	return cu_trigger_attnum(rel, column, trigger,
							 "The rekey's columns are kept while it is live; roll it back and plan it again.");
}

/* One key column of the row: its number, type, value. */
typedef struct RekeyCol
{
	int			attnum;
	Oid			type;
	bool		isnull;
	int64		value;
	bool		changed;		/* UPDATE: differs from the old row */
} RekeyCol;

static void
rekey_read(RekeyCol *c, Relation rel, const char *column, const char *trigger,
		   HeapTuple newtup, HeapTuple oldtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum		d;

	c->attnum = rekey_attnum(rel, column, trigger);
	c->type = TupleDescAttr(desc, c->attnum - 1)->atttypid;
	d = heap_getattr(newtup, c->attnum, desc, &c->isnull);
	c->value = c->isnull ? 0 : rekey_int(d, c->type);
	c->changed = false;
	if (oldtup != NULL)
	{
		bool		oldnull;
		Datum		o = heap_getattr(oldtup, c->attnum, desc, &oldnull);

		c->changed = oldnull != c->isnull || (!oldnull && rekey_int(o, c->type) != c->value);
	}
}

static void
rekey_set(RekeyCol *to, const RekeyCol *from)
{
	to->isnull = from->isnull;
	to->value = from->value;
}

/*
 * A history row's columns copied from the parent, where the row left them
 * NULL: read from the parent row with key `link` as the parent's owner.
 */
static HeapTuple
rekey_fill_from_parent(Trigger *trigger, Relation rel, HeapTuple tuple, int64 link)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			parent = (Oid) strtoul(trigger->tgargs[3], NULL, 10);
	int			ncols = trigger->tgnargs - 5;
	int		   *attnums = palloc(ncols * sizeof(int));
	int			nmissing = 0;
	StringInfoData sql;
	Oid			argtype = INT8OID;
	Datum		arg = Int64GetDatum(link);
	int			i,
				j;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (i = 0; i < ncols; i++)
	{
		const char *col = trigger->tgargs[5 + i];
		int			attnum = rekey_attnum(rel, col, trigger->tgname);
		bool		isnull;

		(void) heap_getattr(tuple, attnum, desc, &isnull);
		/* (a column the parent no longer has is left as written) */
		if (!isnull || get_attnum(parent, col) == InvalidAttrNumber)
			continue;
		appendStringInfo(&sql, "%sp.%s::%s", nmissing > 0 ? ", " : "", quote_identifier(col),
						 format_type_extended(TupleDescAttr(desc, attnum - 1)->atttypid,
											  TupleDescAttr(desc, attnum - 1)->atttypmod,
											  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		attnums[nmissing++] = attnum;
	}
	if (nmissing == 0 || get_rel_name(parent) == NULL)
		return tuple;
	appendStringInfo(&sql, " FROM ONLY %s p WHERE p.%s OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
					 cu_relation_qualified_name(parent), quote_identifier(trigger->tgargs[4]));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "customer_unify: SPI_connect failed");
	/* as the writer: a history row shows no more of the parent than its writer may read */
	if (SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: the parent row of a history row could not be read");
	if (SPI_processed == 1)
	{
		int		   *cols = palloc(nmissing * sizeof(int));
		Datum	   *vals = palloc(nmissing * sizeof(Datum));
		bool	   *nulls = palloc(nmissing * sizeof(bool));

		for (j = 0; j < nmissing; j++)
		{
			bool		isnull;
			Datum		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, j + 1, &isnull);
			Form_pg_attribute att = TupleDescAttr(desc, attnums[j] - 1);

			cols[j] = attnums[j];
			nulls[j] = isnull;
			/* copied out of SPI's memory into the trigger's */
			vals[j] = isnull ? (Datum) 0 : SPI_datumTransfer(v, att->attbyval, att->attlen);
		}
		tuple = heap_modify_tuple_by_cols(tuple, desc, nmissing, cols, vals, nulls);
	}
	SPI_finish();
	return tuple;
}

PG_FUNCTION_INFO_V1(cu_rekey_sync);

Datum
cu_rekey_sync(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	HeapTuple	newtup;
	HeapTuple	oldtup = NULL;
	RekeyCol	parent_link,
				key,
				link;
	bool		old_key_followed;
	int			cols[3];
	Datum		vals[3];
	bool		nulls[3];

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.rekey_sync() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.rekey_sync() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger")));
	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	if (trigger->tgnargs != 3 && trigger->tgnargs < 6)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\": customer_unify.rekey_sync() takes 3 arguments, or 6 or more on a history table, not %d",
						trigger->tgname, trigger->tgnargs),
				 errhint("Create it with customer_unify.rekey(...), which makes them.")));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		newtup = trigdata->tg_newtuple;
		oldtup = trigdata->tg_trigtuple;
	}
	else
		newtup = trigdata->tg_trigtuple;

	rekey_read(&parent_link, rel, trigger->tgargs[0], trigger->tgname, newtup, oldtup);
	rekey_read(&key, rel, trigger->tgargs[1], trigger->tgname, newtup, oldtup);
	rekey_read(&link, rel, trigger->tgargs[2], trigger->tgname, newtup, oldtup);

	if (oldtup == NULL)
	{
		/* an INSERT names one of them (or all: they must agree) */
		if (parent_link.isnull)
			rekey_set(&parent_link, &link);
		if (link.isnull)
			rekey_set(&link, &parent_link);
		if (key.isnull)
			rekey_set(&key, &parent_link);
	}
	else
	{
		/* the key followed the parent link in the old row: it goes on doing so */
		bool		oldnull;
		Datum		ok = heap_getattr(oldtup, key.attnum, RelationGetDescr(rel), &oldnull);
		Datum		op = heap_getattr(oldtup, parent_link.attnum, RelationGetDescr(rel), &oldnull);

		old_key_followed = !oldnull && rekey_int(ok, key.type) == rekey_int(op, parent_link.type);
		if (link.changed && !parent_link.changed)
			rekey_set(&parent_link, &link);
		else if (parent_link.changed && !link.changed)
			rekey_set(&link, &parent_link);
		if (!key.changed && (parent_link.changed || link.changed) && (old_key_followed || key.isnull))
			rekey_set(&key, &parent_link);
		else if (key.isnull)
			rekey_set(&key, &parent_link);
	}

	if ((!parent_link.isnull && !link.isnull && parent_link.value != link.value) ||
		(!parent_link.isnull && !key.isnull && parent_link.value != key.value))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("new row for relation \"%s\" gives %s, %s and %s different values",
						RelationGetRelationName(rel), trigger->tgargs[0], trigger->tgargs[1], trigger->tgargs[2]),
				 errdetail("%s = %s, %s = %s, %s = %s.",
						   trigger->tgargs[0], parent_link.isnull ? "NULL" : psprintf(INT64_FORMAT, parent_link.value),
						   trigger->tgargs[1], key.isnull ? "NULL" : psprintf(INT64_FORMAT, key.value),
						   trigger->tgargs[2], link.isnull ? "NULL" : psprintf(INT64_FORMAT, link.value)),
				 errhint("While the rekey is live a row's %s is the key of its parent row, as %s and %s are; "
						 "write one of them (or all three alike).",
						 trigger->tgargs[1], trigger->tgargs[0], trigger->tgargs[2])));

	cols[0] = parent_link.attnum;
	vals[0] = rekey_datum(parent_link.value, parent_link.type);
	nulls[0] = parent_link.isnull;
	cols[1] = key.attnum;
	vals[1] = rekey_datum(key.value, key.type);
	nulls[1] = key.isnull;
	cols[2] = link.attnum;
	vals[2] = rekey_datum(link.value, link.type);
	nulls[2] = link.isnull;
	newtup = heap_modify_tuple_by_cols(newtup, RelationGetDescr(rel), 3, cols, vals, nulls);

	if (trigger->tgnargs >= 6 && oldtup == NULL && !link.isnull)
		newtup = rekey_fill_from_parent(trigger, rel, newtup, link.value);
	return PointerGetDatum(newtup);
}
