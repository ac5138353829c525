/*-------------------------------------------------------------------------
 * customer_unify.h
 *	  Declarations shared by the customer_unify C module.
 *
 *	  guard.c         per-migration loop guard, engine-active flag, capture
 *	  plan_cache.c    per-trigger cache of built plans, invalidated per relation
 *	  owner_context.c running as a table's owner / the extension's owner
 *	  keys.c          key types: btree operators, binary checkpoint form
 *	  catalog.c       reading and writing the engine's catalog from C
 *	  engine.c        the phase runner, verify, migration creation
 *	  mirror.c        sync triggers (row, flush, truncate) driven by a map
 *	  router.c        the compatibility-view router
 *	  backfill.c      the batch copy engine
 *	  match.c         matcher primitives: Jaro(-Winkler), clusters (union-find)
 *	  normalize.c     normalizers (e-mail, phone, names) and their versions;
 *	                  phone.cpp (C++, libphonenumber) is reached through phone.h
 *	  merge_sync.c    the merge's capture trigger, crosswalk writers, decisions
 *	  jobs.c          background jobs: launch / pause / resume / cancel, the worker, throttling
 *	  touch.c         the table kit's updated_at trigger (stamps only on a real change)
 *	  normalize_write.c the table kit's normalize-on-write trigger
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
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* GUCs (customer_unify.c) */
extern int	cu_lock_timeout_ms;
extern int	cu_lock_retries;
extern bool cu_merge_never_wait;	/* customer_unify.merge_never_wait */

/* ----------------------------------------------------------------- guard.c */
/*
 * The loop guard: while a mirrored write of migration M runs, the triggers
 * of M (WHEN NOT customer_unify._mirror_guard(M)) are not even queued.  Other
 * migrations' triggers still fire: their tables changed for real.
 */
extern void cu_guard_push(int64 migration_id);
extern void cu_guard_pop(void);
extern bool cu_guard_active(int64 migration_id);
extern bool cu_guard_any(void);

/* true while the engine runs a migration's own statements (event triggers stand aside) */
extern int	cu_engine_depth;

/*
 * Capture: the view router asks the AFTER row triggers of the tables it
 * writes for the row version its own statement stored (after defaults,
 * identity and BEFORE triggers), instead of RETURNING, which would need
 * SELECT rights and pass SELECT policies the old table never asked for.
 * Of the versions offered, the one with the smallest cmin is the router's
 * statement's (nested statements run later).
 */
typedef struct CuCapture
{
	struct CuCapture *outer;
	Oid			relid[2];
	HeapTuple	tuple[2];
	CommandId	cmin[2];
	MemoryContext cxt;
} CuCapture;

extern CuCapture *cu_capture_push(Oid rel0, Oid rel1, MemoryContext cxt);
extern void cu_capture_pop(CuCapture *c);
extern void cu_capture_offer(Relation rel, HeapTuple tuple);
extern bool cu_capture_armed(Oid relid);

/* truncation of a migration's source in progress (mirror.c truncate triggers) */
extern void cu_truncating_set(int64 migration_id, bool on);
extern bool cu_truncating(int64 migration_id);

/* ------------------------------------------------------------ plan_cache.c */
/*
 * One cached entry per trigger (by pg_trigger OID).  An entry lists the
 * relations its plans read or write; a relcache invalidation of one of them
 * (or of all) invalidates the entry, nothing else.
 */
typedef struct CuCacheEntry
{
	Oid			tgoid;			/* hash key */
	bool		valid;
	MemoryContext cxt;			/* holds data; deleted on rebuild */
	void	   *data;
	List	   *plans;			/* SPIPlanPtr kept with SPI_keepplan */
	int			nrelids;
	Oid			relids[4];
} CuCacheEntry;

extern CuCacheEntry *cu_cache_lookup(Oid tgoid);
extern void cu_cache_reset(CuCacheEntry *entry);
extern void cu_cache_depends_on(CuCacheEntry *entry, Oid relid);
extern SPIPlanPtr cu_prepare_kept(CuCacheEntry *entry, const char *sql,
								  int nargs, Oid *argtypes);
extern void cu_plan_cache_init(void);

/* --------------------------------------------------------- owner_context.c */
typedef struct CuSavedUser
{
	Oid			userid;
	int			sec_context;
	bool		switched;
} CuSavedUser;

extern void cu_become(Oid role, bool noforce_rls, CuSavedUser *save);
extern void cu_unbecome(CuSavedUser *save);
extern Oid	cu_extension_owner(void);
extern Oid	cu_relation_owner(Oid relid);
extern bool cu_may_act_as(Oid role);
extern int	cu_spi_as(Oid role, bool noforce_rls, const char *sql, SPIPlanPtr plan, int nargs,
					  Oid *types, Datum *values, const char *nulls, bool read_only, long count);

/* ------------------------------------------------------------------ keys.c */
/*
 * A key column's type with the btree operators of the unique index on it
 * (or of the type's default btree operator class): batches, mirrors and
 * checkpoints compare keys with the same semantics the index orders them by.
 */
typedef struct CuKeyType
{
	Oid			type;
	int16		len;
	bool		byval;
	char		align;
	Oid			array_type;		/* InvalidOid when the type has none */
	char	   *eq;				/* "OPERATOR(schema.=)" */
	char	   *lt;
	char	   *gt;
	Oid			send_fn;
	Oid			recv_fn;
	Oid			ioparam;
	Oid			out_fn;
} CuKeyType;

extern void cu_key_type_for_column(Relation rel, AttrNumber attnum, CuKeyType *out);
extern bytea *cu_key_to_binary(CuKeyType *kt, Datum value);
extern Datum cu_key_from_binary(CuKeyType *kt, bytea *bin);
extern char *cu_key_to_text(CuKeyType *kt, Datum value);

/* --------------------------------------------------------------- catalog.c */
typedef struct CuMap
{
	int64		id;
	int64		migration_id;
	char	   *migration_name;
	char	   *name;
	Oid			from_relid;
	Oid			to_relid;
	char	   *from_key;
	char	   *to_key;
	bool		final;			/* route maps: after finalize */
	int			ncols;
	const char **from_columns;	/* ncols names, in sync_map_column.ord order */
	const char **to_columns;
	Oid			source_relid;	/* the migration's 'source' relation */
} CuMap;

extern bool cu_map_load(int64 map_id, CuMap *map, bool missing_ok);
extern void cu_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
							const char *nulls, int expected);
extern Oid	cu_relation_by_tag(int64 migration_id, const char *tag, bool missing_ok);

/* --------------------------------------------------------------- backfill.c */
/*
 * Called between two batches of a backfill, after the batch committed, with
 * the batch's time; may change the batch size of the next batches; returns
 * false to stop the backfill there (it resumes from its checkpoint).  Set
 * only in a background job's worker (jobs.c); the foreground CALL has none.
 */
typedef bool (*cu_batch_hook_type) (int64 migration_id, double batch_ms, int32 *batch_size);
extern cu_batch_hook_type cu_batch_hook;

/* ----------------------------------------------------------------- engine.c */
extern void cu_run_phase_internal(int64 migration_id, const char *phase, Jsonb *options);
extern int64 cu_migration_id_by_name(const char *name);
extern void cu_check_rights(int64 migration_id, const char *action);

/* ------------------------------------------------------------- normalize.c */
/*
 * Match keys for C callers, as the SQL functions compute them; NULL when
 * the value is not an address / not a number.  cu_phone_key's region is an
 * upper-case code already checked (or NULL: international form only).
 */
extern text *cu_email_key(const char *s, int len, bool provider);
extern text *cu_phone_key(const char *s, int len, const char *region);
extern void cu_split_name_parts(const char *s, int len, text **first, text **last);
extern const char *cu_normalizer_version_string(const char *name);
extern void cu_phone_raise(int rc, const char *errbuf);	/* raises ERROR */

/* -------------------------------------------------------- customer_unify.c */
extern const char *cu_relation_qualified_name(Oid relid);
extern Oid	cu_relid_or_error(const char *schema, const char *rel);
extern AttrNumber cu_attnum_or_error(Relation rel, const char *attname);
extern AttrNumber cu_trigger_attnum(Relation rel, const char *column, const char *trigger, const char *hint);
extern void cu_check_trigger_call(FunctionCallInfo fcinfo, const char *funcname,
								  bool row, bool instead_of);
extern void cu_spi_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
							 int expected_type, const char *what);
extern char *cu_datum_text(Oid type, Datum value);
extern int64 cu_trigger_map_id(TriggerData *trigdata);
extern ErrorData *cu_subxact(void (*fn) (void *arg), void *arg);
extern bool cu_is_lock_error(ErrorData *edata);
extern SPIPlanPtr cu_prepare_keep(const char *sql, int nargs, Oid *argtypes);
extern void cu_sleep_ms(int ms);
extern int	cu_backoff_ms(int attempt, int cap_ms);

/* module init hooks */
extern void cu_guard_init(void);
extern void cu_mirror_init(void);
extern void cu_job_refuse_if_running(int64 id, const char *name, const char *phase);	/* jobs.c: 55006 */
extern void cu_jobs_init(void);	/* jobs.c: the static launcher (shared_preload_libraries) */

#endif							/* CUSTOMER_UNIFY_H */
