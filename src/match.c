/*-------------------------------------------------------------------------
 * match.c
 *	  The matcher's primitives: string similarity (Jaro, Jaro-Winkler) and
 *	  the clustering of match edges into identities (union-find).
 *
 *	  The merge operation expresses its rules as passes (block keys, a score
 *	  over two records, a threshold); every pair a pass accepts is an edge,
 *	  and clusters() turns the edges of all passes into connected
 *	  components, so that matching is transitive: A~B by email and B~C by
 *	  phone make one identity of A, B and C.
 *
 *	  jaro(a, b), jaro_winkler(a, b)
 *	    on code points of the database encoding (not bytes), case as given;
 *	    O(len) memory, O(len * window) time; symmetric.
 *	  clusters(a bigint[], b bigint[], max_size)
 *	    one pass over the edges, O(nodes) memory: an open-addressing hash
 *	    table from node id to a dense index, union by size, path halving.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "customer_unify.h"

/* ------------------------------------------------------------------ Jaro */

/*
 * Strings of at most this many bytes are compared in stack buffers; longer
 * ones in palloc'd buffers (a code point takes at least one byte, so the
 * byte length bounds the number of code points).
 */
#define CU_JARO_STACK 64

/* Winkler's prefix scale, longest prefix counted and boost threshold */
#define CU_WINKLER_SCALE 0.1
#define CU_WINKLER_PREFIX 4
#define CU_WINKLER_THRESHOLD 0.7

/*
 * Jaro similarity of s1 and s2 (code points), with the standard
 * definition: two characters match when equal and no farther apart than
 * floor(max(len1, len2) / 2) - 1 (at least 0), each character matching at
 * most once, greedily from the left of s1; t is half the number of matched
 * characters that are out of order (integer division, as in Winkler's
 * strcmp95); jaro = (m/len1 + m/len2 + (m - t)/m) / 3, 0 when m = 0.
 * flags1/flags2 are scratch of len1/len2 bools.
 *
 * The caller orders the arguments canonically (the shorter first), so the
 * result cannot depend on their order, bit for bit, whatever the greedy
 * matching does.
 */
static double
jaro_wchar(const pg_wchar *s1, int len1, const pg_wchar *s2, int len2,
		   bool *flags1, bool *flags2)
{
	int			window;
	int			m = 0;
	int			half = 0;
	int			i,
				k;

	if (len1 == 0 && len2 == 0)
		return 1.0;
	if (len1 == 0 || len2 == 0)
		return 0.0;

	window = Max(len1, len2) / 2 - 1;
	if (window < 0)
		window = 0;
	memset(flags1, 0, len1 * sizeof(bool));
	memset(flags2, 0, len2 * sizeof(bool));

	for (i = 0; i < len1; i++)
	{
		int			lo = Max(0, i - window);
		int			hi = Min(len2 - 1, i + window);
		int			j;

		if ((i & 1023) == 1023)
			CHECK_FOR_INTERRUPTS();
		for (j = lo; j <= hi; j++)
		{
			if (!flags2[j] && s1[i] == s2[j])
			{
				flags1[i] = flags2[j] = true;
				m++;
				break;
			}
		}
	}
	if (m == 0)
		return 0.0;

	/* matched characters of s1 and of s2, in order: count those that differ */
	k = 0;
	for (i = 0; i < len1; i++)
	{
		if (!flags1[i])
			continue;
		while (!flags2[k])
			k++;
		if (s1[i] != s2[k])
			half++;
		k++;
	}

	return ((double) m / len1 + (double) m / len2 + (double) (m - half / 2) / m) / 3.0;
}

/*
 * Compare two texts as code points; jaro, and with winkler the prefix
 * boost: jaro + l * 0.1 * (1 - jaro) for the l <= 4 equal leading code
 * points, applied only when jaro > 0.7.
 */
static double
jaro_text(text *t1, text *t2, bool winkler)
{
	const char *b1 = VARDATA_ANY(t1);
	const char *b2 = VARDATA_ANY(t2);
	int			blen1 = VARSIZE_ANY_EXHDR(t1);
	int			blen2 = VARSIZE_ANY_EXHDR(t2);
	pg_wchar	stack_w1[CU_JARO_STACK + 1];
	pg_wchar	stack_w2[CU_JARO_STACK + 1];
	bool		stack_f1[CU_JARO_STACK];
	bool		stack_f2[CU_JARO_STACK];
	pg_wchar   *w1 = stack_w1;
	pg_wchar   *w2 = stack_w2;
	bool	   *f1 = stack_f1;
	bool	   *f2 = stack_f2;
	int			len1,
				len2;
	double		jaro;

	if (blen1 > CU_JARO_STACK)
	{
		w1 = palloc((blen1 + 1) * sizeof(pg_wchar));
		f1 = palloc(blen1 * sizeof(bool));
	}
	if (blen2 > CU_JARO_STACK)
	{
		w2 = palloc((blen2 + 1) * sizeof(pg_wchar));
		f2 = palloc(blen2 * sizeof(bool));
	}
	len1 = pg_mb2wchar_with_len(b1, w1, blen1);
	len2 = pg_mb2wchar_with_len(b2, w2, blen2);

	/* canonical order: the shorter first, then the smaller code points */
	{
		bool		swap = len1 > len2;

		if (len1 == len2)
		{
			int			i;

			for (i = 0; i < len1 && w1[i] == w2[i]; i++)
				;
			swap = i < len1 && w1[i] > w2[i];
		}
		if (swap)
			jaro = jaro_wchar(w2, len2, w1, len1, f2, f1);
		else
			jaro = jaro_wchar(w1, len1, w2, len2, f1, f2);
	}

	if (winkler && jaro > CU_WINKLER_THRESHOLD)
	{
		int			l = 0;
		int			maxl = Min(CU_WINKLER_PREFIX, Min(len1, len2));

		while (l < maxl && w1[l] == w2[l])
			l++;
		jaro += l * CU_WINKLER_SCALE * (1.0 - jaro);
	}

	if (w1 != stack_w1)
	{
		pfree(w1);
		pfree(f1);
	}
	if (w2 != stack_w2)
	{
		pfree(w2);
		pfree(f2);
	}
	return jaro;
}

PG_FUNCTION_INFO_V1(cu_jaro);
PG_FUNCTION_INFO_V1(cu_jaro_winkler);

/* customer_unify.jaro(text, text) -> float8 */
Datum
cu_jaro(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(jaro_text(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), false));
}

/* customer_unify.jaro_winkler(text, text) -> float8 */
Datum
cu_jaro_winkler(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(jaro_text(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), true));
}

/* -------------------------------------------------------------- clusters */

/*
 * The nodes seen so far, by dense index 0..n-1 in order of first
 * appearance: id, union-find parent, and for a root the size of its
 * component and the smallest id in it.  The hash table maps an id to its
 * index (slot -1: empty; linear probing; at most half full).
 */
typedef struct NodeSet
{
	int64	   *id;
	int32	   *parent;
	int32	   *size;
	int64	   *min_id;
	int32		n;
	int32		alloc;			/* of the four arrays */
	int32	   *slot;
	uint64		mask;			/* capacity - 1, capacity a power of 2 */
} NodeSet;

#define CU_NODES_INITIAL 1024

/* splitmix64's finalizer: every bit of the id reaches the low bits */
static inline uint64
node_hash(int64 id)
{
	uint64		x = (uint64) id;

	x ^= x >> 30;
	x *= UINT64CONST(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64CONST(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

static void
nodes_rehash(NodeSet *ns, uint64 capacity)
{
	int32		i;

	if (ns->slot)
		pfree(ns->slot);
	ns->slot = MemoryContextAllocHuge(CurrentMemoryContext, capacity * sizeof(int32));
	memset(ns->slot, 0xff, capacity * sizeof(int32));	/* all -1 */
	ns->mask = capacity - 1;
	for (i = 0; i < ns->n; i++)
	{
		uint64		h = node_hash(ns->id[i]) & ns->mask;

		while (ns->slot[h] >= 0)
			h = (h + 1) & ns->mask;
		ns->slot[h] = i;
	}
}

static void
nodes_init(NodeSet *ns)
{
	memset(ns, 0, sizeof(*ns));
	ns->alloc = CU_NODES_INITIAL;
	ns->id = palloc(ns->alloc * sizeof(int64));
	ns->parent = palloc(ns->alloc * sizeof(int32));
	ns->size = palloc(ns->alloc * sizeof(int32));
	ns->min_id = palloc(ns->alloc * sizeof(int64));
	nodes_rehash(ns, 2 * CU_NODES_INITIAL);
}

/* The index of node id, a new singleton when first seen. */
static int32
nodes_index(NodeSet *ns, int64 id)
{
	uint64		h = node_hash(id) & ns->mask;
	int32		i;

	for (;;)
	{
		int32		s = ns->slot[h];

		if (s < 0)
			break;
		if (ns->id[s] == id)
			return s;
		h = (h + 1) & ns->mask;
	}

	if (ns->n == ns->alloc)
	{
		Size		newalloc = (Size) ns->alloc * 2;

		if (newalloc > PG_INT32_MAX)
			newalloc = PG_INT32_MAX;
		if (ns->n == newalloc)
			elog(ERROR, "customer_unify: too many nodes for clusters()");
		ns->id = repalloc_huge(ns->id, newalloc * sizeof(int64));
		ns->parent = repalloc_huge(ns->parent, newalloc * sizeof(int32));
		ns->size = repalloc_huge(ns->size, newalloc * sizeof(int32));
		ns->min_id = repalloc_huge(ns->min_id, newalloc * sizeof(int64));
		ns->alloc = (int32) newalloc;
	}
	i = ns->n++;
	ns->id[i] = id;
	ns->parent[i] = i;
	ns->size[i] = 1;
	ns->min_id[i] = id;
	ns->slot[h] = i;

	/* keep the table at most half full */
	if ((uint64) ns->n * 2 > ns->mask + 1)
		nodes_rehash(ns, (ns->mask + 1) * 2);
	return i;
}

/* The root of i's component, halving the path on the way. */
static inline int32
nodes_find(NodeSet *ns, int32 i)
{
	int32	   *parent = ns->parent;

	while (parent[i] != i)
	{
		parent[i] = parent[parent[i]];
		i = parent[i];
	}
	return i;
}

/* Join the components of i and j: the smaller hangs under the larger. */
static inline void
nodes_union(NodeSet *ns, int32 i, int32 j)
{
	int32		ri = nodes_find(ns, i);
	int32		rj = nodes_find(ns, j);

	if (ri == rj)
		return;
	if (ns->size[ri] < ns->size[rj])
	{
		int32		t = ri;

		ri = rj;
		rj = t;
	}
	ns->parent[rj] = ri;
	ns->size[ri] += ns->size[rj];
	if (ns->min_id[rj] < ns->min_id[ri])
		ns->min_id[ri] = ns->min_id[rj];
}

/*
 * The elements of an edge array argument: NULL counts as empty (array_agg
 * over no rows); more than one dimension or a NULL element is refused.
 */
static int64 *
edge_array(FunctionCallInfo fcinfo, int argno, const char *argname, int *count)
{
	ArrayType  *arr;
	int			n;

	if (PG_ARGISNULL(argno))
	{
		*count = 0;
		return NULL;
	}
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_unify.clusters: array %s must have one dimension, not %d",
						argname, ARR_NDIM(arr)),
				 errhint("Pass the edges as two one-dimensional arrays, a[i] ~ b[i].")));
	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (ARR_HASNULL(arr))
	{
		bits8	   *bitmap = ARR_NULLBITMAP(arr);
		int			i;

		for (i = 0; i < n; i++)
		{
			if ((bitmap[i / 8] & (1 << (i % 8))) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("customer_unify.clusters: array %s has a NULL element", argname),
						 errdetail("Element %d of %s (counting from 1) is NULL.", i + 1, argname),
						 errhint("An edge joins two node ids; leave out the pairs with a NULL end.")));
		}
	}
	*count = n;
	return (int64 *) ARR_DATA_PTR(arr);
}

PG_FUNCTION_INFO_V1(cu_clusters);

/*
 * customer_unify.clusters(a bigint[], b bigint[], max_size int DEFAULT NULL)
 *   -> TABLE (node bigint, cluster bigint, size int, oversized boolean)
 *
 * The connected components of the undirected edges (a[i], b[i]): every
 * node of an edge once, in order of first appearance, with the smallest
 * node id of its component, the component's size, and whether that size
 * exceeds max_size (never when max_size is NULL).
 */
Datum
cu_clusters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			na,
				nb;
	int64	   *a = edge_array(fcinfo, 0, "a", &na);
	int64	   *b = edge_array(fcinfo, 1, "b", &nb);
	bool		have_max = !PG_ARGISNULL(2);
	int32		max_size = have_max ? PG_GETARG_INT32(2) : 0;
	MemoryContext work;
	MemoryContext old;
	NodeSet		ns;
	int			e;
	int32		i;

	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_unify.clusters: arrays a and b must have the same length"),
				 errdetail("a has %d elements, b has %d.", na, nb),
				 errhint("Edge i joins a[i] and b[i].")));
	if (have_max && max_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_unify.clusters: max_size must be at least 1, not %d", max_size),
				 errhint("Pass NULL to flag no cluster as oversized.")));

	InitMaterializedSRF(fcinfo, 0);

	work = AllocSetContextCreate(CurrentMemoryContext, "customer_unify clusters",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	nodes_init(&ns);
	for (e = 0; e < na; e++)
	{
		int32		ia = nodes_index(&ns, a[e]);
		int32		ib = nodes_index(&ns, b[e]);

		nodes_union(&ns, ia, ib);
		if ((e & 65535) == 65535)
			CHECK_FOR_INTERRUPTS();
	}
	MemoryContextSwitchTo(old);

	for (i = 0; i < ns.n; i++)
	{
		int32		r = nodes_find(&ns, i);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(ns.id[i]);
		values[1] = Int64GetDatum(ns.min_id[r]);
		values[2] = Int32GetDatum(ns.size[r]);
		values[3] = BoolGetDatum(have_max && ns.size[r] > max_size);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		if ((i & 65535) == 65535)
			CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(work);
	return (Datum) 0;
}
