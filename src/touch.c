/*-------------------------------------------------------------------------
 * touch.c
 *	  The table kit's updated_at trigger: customer_unify.touch_updated_at().
 *
 *	  A BEFORE UPDATE ... FOR EACH ROW trigger that stamps a timestamp
 *	  column only when some other column of the row actually changed, so an
 *	  UPDATE that writes a row back with the values it had (an ORM's save()
 *	  of an unchanged object, a no-op bulk UPDATE) does not move it.  Unlike
 *	  contrib/spi/moddatetime.c, which overwrites the column on every update.
 *
 *	  Trigger arguments (made by the kit's start step from the catalog):
 *	    1. the column to stamp (timestamptz, timestamp or date)
 *	    2. the clock: 'transaction' (now()), 'statement'
 *	       (statement_timestamp()) or 'clock' (clock_timestamp())
 *	    3. 'keep': an UPDATE that assigns the column a new value itself keeps
 *	       it; 'overwrite': the trigger stamps it anyway
 *	    4. a column protected from change (created_at), '' for none: an
 *	       UPDATE that changes it gets the old value back
 *
 *	  "Changed" is binary inequality of the stored datums (as
 *	  ri_triggers.c compares keys), over the columns other than these two
 *	  and the stored generated ones (computed after BEFORE triggers).  A
 *	  value rewritten with another binary form of an equal value (numeric
 *	  1.0 for 1.00) counts as a change: the stamp errs on the side of "it
 *	  was touched".  The trigger runs with the caller's rights and reads no
 *	  catalog table: the only work per row is the comparison.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "customer_unify.h"

/* The stamp for the column's type, from the clock the trigger was given. */
static Datum
touch_stamp(const char *clock, Oid type, const char *trigger, const char *column)
{
	TimestampTz now;

	if (strcmp(clock, "transaction") == 0)
		now = GetCurrentTransactionStartTimestamp();
	else if (strcmp(clock, "statement") == 0)
		now = GetCurrentStatementStartTimestamp();
	else if (strcmp(clock, "clock") == 0)
		now = GetCurrentTimestamp();
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\": unknown clock \"%s\"", trigger, clock),
				 errhint("The clock is 'transaction', 'statement' or 'clock'.")));
	switch (type)
	{
		case TIMESTAMPTZOID:
			return TimestampTzGetDatum(now);
		case TIMESTAMPOID:
			return DirectFunctionCall1(timestamptz_timestamp, TimestampTzGetDatum(now));
		case DATEOID:
			return DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(now));
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("trigger \"%s\": column \"%s\" is of type %s, not a timestamp or date",
							trigger, column, format_type_be(type))));
	}
	return (Datum) 0;			/* not reached */
}

/* The column's number in the trigger's table, or an error naming it. */
static int
touch_attnum(Relation rel, const char *column, const char *trigger)
{
	return cu_trigger_attnum(rel, column, trigger,
							 "The column was renamed or dropped; roll the kit's migration back and plan it again.");
}

/* The trigger's columns and per-row arrays, kept for one statement (fn_extra). */
typedef struct TouchCache
{
	Oid			tgoid;
	int			natts;
	int			stamp_attnum;
	int			keep_attnum;	/* 0: none */
	bool		keep_explicit;
	Datum	   *oldvals;
	bool	   *oldnulls;
	Datum	   *newvals;
	bool	   *newnulls;
} TouchCache;

/* Are the i-th values of the two deformed rows binary equal (both null counts as equal)? */
static inline bool
touch_equal(TouchCache *c, TupleDesc desc, int i)
{
	Form_pg_attribute att = TupleDescAttr(desc, i);

	if (c->oldnulls[i] || c->newnulls[i])
		return c->oldnulls[i] == c->newnulls[i];
	return datumIsEqual(c->oldvals[i], c->newvals[i], att->attbyval, att->attlen);
}

PG_FUNCTION_INFO_V1(cu_touch_updated_at);

Datum
cu_touch_updated_at(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	desc;
	TouchCache *c;
	bool		changed = false;
	bool		modified = false;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.touch_updated_at() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.touch_updated_at() must be a BEFORE UPDATE ... FOR EACH ROW trigger")));
	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);

	/* the columns by name once per statement (the table cannot change under one) */
	c = (TouchCache *) fcinfo->flinfo->fn_extra;
	if (c == NULL || c->tgoid != trigger->tgoid || c->natts != desc->natts)
	{
		MemoryContext old;

		if (trigger->tgnargs != 4)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("trigger \"%s\": customer_unify.touch_updated_at() takes 4 arguments, not %d",
							trigger->tgname, trigger->tgnargs),
					 errhint("Create it with customer_unify.updated_at(...), which makes them.")));
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		c = palloc0(sizeof(TouchCache));
		c->tgoid = trigger->tgoid;
		c->natts = desc->natts;
		c->stamp_attnum = touch_attnum(rel, trigger->tgargs[0], trigger->tgname);
		c->keep_attnum = trigger->tgargs[3][0] != '\0' ? touch_attnum(rel, trigger->tgargs[3], trigger->tgname) : 0;
		c->keep_explicit = strcmp(trigger->tgargs[2], "keep") == 0;
		c->oldvals = palloc(desc->natts * sizeof(Datum));
		c->oldnulls = palloc(desc->natts * sizeof(bool));
		c->newvals = palloc(desc->natts * sizeof(Datum));
		c->newnulls = palloc(desc->natts * sizeof(bool));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = c;
	}
	heap_deform_tuple(trigdata->tg_trigtuple, desc, c->oldvals, c->oldnulls);
	heap_deform_tuple(trigdata->tg_newtuple, desc, c->newvals, c->newnulls);

	for (i = 0; i < desc->natts && !changed; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (i + 1 == c->stamp_attnum || i + 1 == c->keep_attnum || att->attisdropped || att->attgenerated)
			continue;
		changed = !touch_equal(c, desc, i);
	}

	/* the protected column keeps its value, whatever else happens */
	if (c->keep_attnum > 0 && !touch_equal(c, desc, c->keep_attnum - 1))
	{
		c->newvals[c->keep_attnum - 1] = c->oldvals[c->keep_attnum - 1];
		c->newnulls[c->keep_attnum - 1] = c->oldnulls[c->keep_attnum - 1];
		modified = true;
	}
	if (changed && !(c->keep_explicit && !touch_equal(c, desc, c->stamp_attnum - 1)))
	{
		c->newvals[c->stamp_attnum - 1] = touch_stamp(trigger->tgargs[1],
													  TupleDescAttr(desc, c->stamp_attnum - 1)->atttypid,
													  trigger->tgname, trigger->tgargs[0]);
		c->newnulls[c->stamp_attnum - 1] = false;
		modified = true;
	}
	if (!modified)
		return PointerGetDatum(trigdata->tg_newtuple);
	{
		HeapTuple	result = heap_form_tuple(desc, c->newvals, c->newnulls);

		/* the identity of the row, as heap_modify_tuple keeps it */
		result->t_data->t_ctid = trigdata->tg_newtuple->t_data->t_ctid;
		result->t_self = trigdata->tg_newtuple->t_self;
		result->t_tableOid = trigdata->tg_newtuple->t_tableOid;
		return PointerGetDatum(result);
	}
}
