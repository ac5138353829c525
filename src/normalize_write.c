/*-------------------------------------------------------------------------
 * normalize_write.c
 *	  The table kit's normalize-on-write trigger:
 *	  customer_unify.normalize_on_write().
 *
 *	  A BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger that stores the
 *	  match key of an e-mail address or phone number (the normalizers of
 *	  normalize.c: cu_email_key, cu_phone_key) instead of the value as
 *	  typed, so that a unique index on the column sees one spelling per
 *	  address or number.  An UPDATE is normalized only when it changes the
 *	  column: a row written before the trigger existed can still be updated
 *	  in its other columns whatever its value.
 *
 *	  Trigger arguments (made by the kit's start step):
 *	    1. the column (text, varchar or another type with text's binary form)
 *	    2. 'email' or 'phone'
 *	    3. the phone's default region (upper-case ISO 3166-1 code, checked
 *	       when planned), '' for numbers in international form only
 *	    4. what a value that does not normalize gets: 'reject' (23514, the
 *	       value in the detail), 'keep' (stored as typed) or 'null'
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"

#include "customer_unify.h"

typedef enum NormalizeInvalid
{
	INVALID_REJECT,
	INVALID_KEEP,
	INVALID_NULL
} NormalizeInvalid;

/* The trigger's arguments, parsed once per statement (fn_extra). */
typedef struct NormalizeWriteCache
{
	Oid			tgoid;
	int			attnum;
	bool		phone;
	char		region[3];		/* "" : international form only */
	NormalizeInvalid invalid;
} NormalizeWriteCache;

static NormalizeWriteCache *
normalize_write_cache(FunctionCallInfo fcinfo, Trigger *trigger, Relation rel)
{
	NormalizeWriteCache *c = (NormalizeWriteCache *) fcinfo->flinfo->fn_extra;

	if (c != NULL && c->tgoid == trigger->tgoid)
		return c;
	if (trigger->tgnargs != 4 ||
		(strcmp(trigger->tgargs[1], "email") != 0 && strcmp(trigger->tgargs[1], "phone") != 0) ||
		strlen(trigger->tgargs[2]) > 2 ||
		(strcmp(trigger->tgargs[3], "reject") != 0 && strcmp(trigger->tgargs[3], "keep") != 0 &&
		 strcmp(trigger->tgargs[3], "null") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\": customer_unify.normalize_on_write() takes (column, 'email' | 'phone', region, 'reject' | 'keep' | 'null')",
						trigger->tgname),
				 errhint("Create it with customer_unify.normalize_on_write(...), which makes them.")));
	c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(NormalizeWriteCache));
	c->tgoid = trigger->tgoid;
	c->attnum = SPI_fnumber(RelationGetDescr(rel), trigger->tgargs[0]);
	if (c->attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("trigger \"%s\": column \"%s\" of %s does not exist", trigger->tgname, trigger->tgargs[0],
						RelationGetRelationName(rel)),
				 errhint("The column was renamed or dropped; roll the kit's migration back and plan it again.")));
	c->phone = strcmp(trigger->tgargs[1], "phone") == 0;
	strlcpy(c->region, trigger->tgargs[2], sizeof(c->region));
	c->invalid = strcmp(trigger->tgargs[3], "reject") == 0 ? INVALID_REJECT :
		strcmp(trigger->tgargs[3], "keep") == 0 ? INVALID_KEEP : INVALID_NULL;
	fcinfo->flinfo->fn_extra = c;
	return c;
}

PG_FUNCTION_INFO_V1(cu_normalize_on_write);

Datum
cu_normalize_on_write(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	NormalizeWriteCache *c;
	Datum		value;
	bool		isnull;
	text	   *in;
	text	   *key;
	Datum		newvalue;
	bool		newnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.normalize_on_write() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("customer_unify.normalize_on_write() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	c = normalize_write_cache(fcinfo, trigdata->tg_trigger, rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	value = heap_getattr(tuple, c->attnum, desc, &isnull);
	if (isnull)
		return PointerGetDatum(tuple);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		/* an update that leaves the column as it was leaves it alone */
		Form_pg_attribute att = TupleDescAttr(desc, c->attnum - 1);
		bool		oldnull;
		Datum		old = heap_getattr(trigdata->tg_trigtuple, c->attnum, desc, &oldnull);

		if (!oldnull && datumIsEqual(old, value, att->attbyval, att->attlen))
			return PointerGetDatum(tuple);
	}
	in = DatumGetTextPP(value);
	key = c->phone ? cu_phone_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), c->region[0] ? c->region : NULL)
		: cu_email_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), false);
	if (key == NULL)
	{
		if (c->invalid == INVALID_KEEP)
			return PointerGetDatum(tuple);
		if (c->invalid == INVALID_REJECT)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("%s of %s is not %s", NameStr(TupleDescAttr(desc, c->attnum - 1)->attname),
							RelationGetRelationName(rel), c->phone ? "a phone number" : "an e-mail address"),
					 errdetail("The value was \"%s\"; trigger \"%s\" stores only values that normalize_%s accepts.",
							   text_to_cstring(in), trigdata->tg_trigger->tgname, c->phone ? "phone" : "email"),
					 errhint(c->phone && c->region[0] == '\0'
							 ? "Write the number in international form (+...)."
							 : "Correct the value, or write NULL.")));
		newnull = true;
		newvalue = (Datum) 0;
	}
	else
	{
		/* already in normal form: nothing to change */
		if (VARSIZE_ANY_EXHDR(key) == VARSIZE_ANY_EXHDR(in) &&
			memcmp(VARDATA_ANY(key), VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in)) == 0)
			return PointerGetDatum(tuple);
		/* a varchar(n) keeps its limit (a BEFORE trigger's row is not coerced again) */
		if (TupleDescAttr(desc, c->attnum - 1)->atttypmod > VARHDRSZ &&
			pg_mbstrlen_with_len(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) >
			TupleDescAttr(desc, c->attnum - 1)->atttypmod - VARHDRSZ)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("the normal form of %s is too long for %s of %s",
							text_to_cstring(in), NameStr(TupleDescAttr(desc, c->attnum - 1)->attname),
							RelationGetRelationName(rel)),
					 errdetail("\"%s\" has more than %d characters.", text_to_cstring(key),
							   TupleDescAttr(desc, c->attnum - 1)->atttypmod - VARHDRSZ)));
		newvalue = PointerGetDatum(key);
	}
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 1, &c->attnum, &newvalue, &newnull));
}
