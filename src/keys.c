/*-------------------------------------------------------------------------
 * keys.c
 *	  Key columns: which operators compare them, and how a key is stored in
 *	  a checkpoint.
 *
 *	  Keys are compared with the btree operators of the unique index on the
 *	  column (the primary key of a source, the link's unique index on a
 *	  target), so that "next batch after k", "the row with key k" and the
 *	  index agree, whatever the search_path and for types whose operators
 *	  live outside pg_catalog (citext).  A checkpoint keeps a key in the
 *	  type's binary send format: independent of DateStyle, extra_float_digits
 *	  or any other setting that changes a type's text form.
 *
 *	  _key_text() gives the text form of a key as the merge crosswalk stores
 *	  it, from a value of another type (a reference column).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_operator.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "customer_unify.h"

/* "OPERATOR(schema.op)" of an operator, from the catalog */
static char *
operator_sql(Oid opr)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opr));
	Form_pg_operator form;
	char	   *result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "customer_unify: cache lookup failed for operator %u", opr);
	form = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)),
					  NameStr(form->oprname));
	ReleaseSysCache(tup);
	return result;
}

/* The operator class of the unique single-column index on attnum, or InvalidOid. */
static Oid
unique_index_opclass(Relation rel, AttrNumber attnum)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;
	bool		found_primary = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;
		bool		isnull;
		Datum		d;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indisvalid && idx->indnkeyatts == 1 &&
			idx->indkey.values[0] == attnum &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			(!OidIsValid(found) || (idx->indisprimary && !found_primary)))
		{
			oidvector  *classes;

			d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull);
			classes = (oidvector *) DatumGetPointer(d);
			found = classes->values[0];
			found_primary = idx->indisprimary;
		}
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return found;
}

void
cu_key_type_for_column(Relation rel, AttrNumber attnum, CuKeyType *out)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Oid			opclass = unique_index_opclass(rel, attnum);
	Oid			opfamily;
	Oid			intype;
	Oid			eq,
				lt,
				gt;
	bool		isvarlena;

	memset(out, 0, sizeof(*out));
	out->type = att->atttypid;
	if (!OidIsValid(opclass))
		opclass = GetDefaultOpClass(out->type, BTREE_AM_OID);
	if (!OidIsValid(opclass))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key column \"%s\" of \"%s\" has a type without a btree operator class",
						NameStr(att->attname), RelationGetRelationName(rel))));
	opfamily = get_opclass_family(opclass);
	intype = get_opclass_input_type(opclass);
	eq = get_opfamily_member(opfamily, intype, intype, BTEqualStrategyNumber);
	lt = get_opfamily_member(opfamily, intype, intype, BTLessStrategyNumber);
	gt = get_opfamily_member(opfamily, intype, intype, BTGreaterStrategyNumber);
	if (!OidIsValid(eq) || !OidIsValid(lt) || !OidIsValid(gt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the operator class of key column \"%s\" of \"%s\" lacks =, < or >",
						NameStr(att->attname), RelationGetRelationName(rel))));
	out->eq = operator_sql(eq);
	out->lt = operator_sql(lt);
	out->gt = operator_sql(gt);
	get_typlenbyvalalign(out->type, &out->len, &out->byval, &out->align);
	out->array_type = get_array_type(out->type);
	getTypeBinaryOutputInfo(out->type, &out->send_fn, &isvarlena);
	getTypeBinaryInputInfo(out->type, &out->recv_fn, &out->ioparam);
	getTypeOutputInfo(out->type, &out->out_fn, &isvarlena);
}

bytea *
cu_key_to_binary(CuKeyType *kt, Datum value)
{
	return OidSendFunctionCall(kt->send_fn, value);
}

Datum
cu_key_from_binary(CuKeyType *kt, bytea *bin)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, VARDATA_ANY(bin), VARSIZE_ANY_EXHDR(bin));
	return OidReceiveFunctionCall(kt->recv_fn, &buf, kt->ioparam, -1);
}

char *
cu_key_to_text(CuKeyType *kt, Datum value)
{
	return OidOutputFunctionCall(kt->out_fn, value);
}

/*
 * _key_text(value text, type regtype): the value read as a value of the
 * type and written back in the type's text form (a uuid typed in capitals,
 * a varchar(36) holding one, comes back as the crosswalk spells the key), or
 * NULL when it is not a value of the type.  Only a data exception means
 * "not a value"; any other error is raised.  Called per referencing row
 * whose column's type differs from the key's, so the input runs in a
 * subtransaction, as PL/pgSQL's exception blocks do.
 */
PG_FUNCTION_INFO_V1(cu_key_text);
Datum
cu_key_text(PG_FUNCTION_ARGS)
{
	char	   *value = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			typid = PG_GETARG_OID(1);
	Oid			in_fn;
	Oid			ioparam;
	Oid			out_fn;
	bool		isvarlena;
	char	   *result = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	getTypeInputInfo(typid, &in_fn, &ioparam);
	getTypeOutputInfo(typid, &out_fn, &isvarlena);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		d = OidInputFunctionCall(in_fn, value, ioparam, -1);

		result = OidOutputFunctionCall(out_fn, d);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}
