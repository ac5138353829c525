/*-------------------------------------------------------------------------
 * jobs.c
 *	  Background jobs: a migration's phases run by a dynamic background
 *	  worker, independent of the session that launched it.
 *
 *	  This file owns customer_unify.job (one row per migration that has or
 *	  had a job; written only here, as the extension's owner, after the
 *	  caller's rights were checked), the SQL entry points launch, pause,
 *	  resume, cancel and set_throttle, the worker's main loop, and the
 *	  backfill's between-batches hook (cu_batch_hook) through which the
 *	  worker pauses, cancels and throttles its backfill.
 *
 *	  The worker connects as the migration's owner (the role that planned
 *	  it, which the launcher must be a member of) and runs the engine's own
 *	  entry points, each as a top-level statement of its own transaction:
 *	  start(), CALL backfill(...) (which commits per batch, so it runs in a
 *	  portal as a client's CALL would), verify(), cutover(), finalize().
 *	  After each phase, and between two batches of the backfill, it reads
 *	  the job row: a pause or cancel request stops it there (the backfill's
 *	  checkpoint is committed with each batch, so nothing is lost), and a
 *	  newer generation (a job launched again) makes it leave.
 *
 *	  While a worker lives it holds a session advisory lock (class
 *	  JOB_LOCK_CLASS, the migration's id): a job whose row says running
 *	  but whose lock is free was interrupted (the worker was killed, the
 *	  server crashed or restarted) and is continued by resume() from the
 *	  engine's checkpoint.
 *
 *	  Loaded by shared_preload_libraries, the module also registers a
 *	  static "customer_unify job launcher" worker: at every server start
 *	  (and after a crash restart) it runs, one database after another, a
 *	  short-lived scanner that resumes the interrupted jobs of that
 *	  database (each in its own worker, as its migration's owner; paused
 *	  and cancelled jobs stay as they are), then idles like autoprewarm's
 *	  leader so that the postmaster starts it again after the next crash.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/instrument.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "customer_unify.h"

#define JOB_LOCK_CLASS		0x43550002	/* advisory lock space: "CU", job worker */
#define JOB_HOLD_POLL_MS	1000		/* a held job looks again after this */
#define JOB_START_WAIT_MS	10000		/* launch waits this long for the worker's lock */
#define JOB_WAL_SLEEP_MAX_MS 60000		/* max_wal_bytes_per_sec sleeps at most this long after a batch */
#define JOB_ATTACH_ATTEMPTS 20			/* ADD CONSTRAINT ... USING INDEX: tries of its lock */

PGDLLEXPORT void cu_job_main(Datum main_arg);
PGDLLEXPORT void cu_job_launcher_main(Datum main_arg);
PGDLLEXPORT void cu_job_scanner_main(Datum main_arg);

/* What a worker is given (bgw_extra). */
typedef struct JobArgs
{
	int64		migration_id;
	int32		generation;
	TransactionId launcher_xid;
	Oid			database;
	Oid			role;
} JobArgs;

/* A job row and its migration, as the worker and the control functions read them. */
typedef struct JobRow
{
	bool		found;
	char	   *name;
	char	   *state;
	char	   *request;
	char	   *until;
	int32		generation;
	int32		batch_size;
	int32		lock_timeout_ms;
	double		nice;
	int32		chunk_ms;
	int64		max_lag_bytes;
	bool		in_window;
	char	   *throttle_query;
	char	   *migration_state;
	char	   *owner;
	int32		max_lock_waits;	/* -1: off */
	int64		max_wal_bytes_per_sec;	/* 0: off */
	char	   *phase;
	int32		pid;
} JobRow;

/* the worker's job (for the batch hook) */
static JobArgs job_args;

/* max_wal_bytes_per_sec: this worker's WAL bytes and the time at the last look */
static int64 job_wal_mark_bytes;
static TimestampTz job_wal_mark_time;

static void
job_wal_mark(void)
{
	job_wal_mark_bytes = pgWalUsage.wal_bytes;
	job_wal_mark_time = GetCurrentTimestamp();
}

/* the phases in the order a job runs them, and the state each leaves */
static const char *const job_states[] = {"planned", "started", "backfilled", "verified", "cut_over", "finalized", NULL};

static int
job_state_index(const char *state)
{
	int			i;

	for (i = 0; job_states[i] != NULL; i++)
		if (strcmp(job_states[i], state) == 0)
			return i;
	return -1;
}

/* ------------------------------------------------------------ the job row */

static char *
job_getstr(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

static bool
job_streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/*
 * Read the job row of migration id (and FOR UPDATE, as the extension's
 * owner, when lock).  Called with an SPI connection; strings are allocated
 * in the caller's context (SPI's calls leave it in its own).
 */
static void
job_read(int64 id, bool lock, JobRow *j)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	const char *sql =
		"SELECT m.name, j.state, j.request, j.until, j.generation, j.batch_size, j.lock_timeout_ms, "
		"j.nice, j.chunk_ms, j.max_lag_bytes, "
		"CASE WHEN j.window_start IS NULL THEN true "
		"     WHEN j.window_start OPERATOR(pg_catalog.<=) j.window_end "
		"     THEN pg_catalog.clock_timestamp()::pg_catalog.time OPERATOR(pg_catalog.>=) j.window_start "
		"      AND pg_catalog.clock_timestamp()::pg_catalog.time OPERATOR(pg_catalog.<) j.window_end "
		"     ELSE pg_catalog.clock_timestamp()::pg_catalog.time OPERATOR(pg_catalog.>=) j.window_start "
		"       OR pg_catalog.clock_timestamp()::pg_catalog.time OPERATOR(pg_catalog.<) j.window_end END, "
		"j.throttle_query, m.state, m.owner, j.max_lock_waits, j.max_wal_bytes_per_sec, j.phase, j.pid "
		"FROM customer_unify.job j JOIN customer_unify.migration m ON m.id OPERATOR(pg_catalog.=) j.migration_id "
		"WHERE j.migration_id OPERATOR(pg_catalog.=) $1";
	int			rc;
	char	   *s;

	if (lock)
		rc = cu_spi_as(cu_extension_owner(), false, psprintf("%s FOR UPDATE OF j", sql), NULL, 1, types, values,
					   NULL, false, 1);
	else
		rc = SPI_execute_with_args(sql, 1, types, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the job failed: %s", SPI_result_code_string(rc));
	MemoryContextSwitchTo(cxt);
	memset(j, 0, sizeof(*j));
	j->found = SPI_processed == 1;
	if (!j->found)
		return;
	j->name = job_getstr(1);
	j->state = job_getstr(2);
	j->request = job_getstr(3);
	j->until = job_getstr(4);
	j->generation = atoi(job_getstr(5));
	j->batch_size = atoi(job_getstr(6));
	j->lock_timeout_ms = atoi(job_getstr(7));
	s = job_getstr(8);
	j->nice = s ? strtod(s, NULL) : 0;
	s = job_getstr(9);
	j->chunk_ms = s ? atoi(s) : 0;
	s = job_getstr(10);
	j->max_lag_bytes = s ? pg_strtoint64(s) : 0;
	j->in_window = job_streq(job_getstr(11), "t");
	j->throttle_query = job_getstr(12);
	j->migration_state = job_getstr(13);
	j->owner = job_getstr(14);
	s = job_getstr(15);
	j->max_lock_waits = s ? atoi(s) : -1;
	s = job_getstr(16);
	j->max_wal_bytes_per_sec = s ? pg_strtoint64(s) : 0;
	j->phase = job_getstr(17);
	s = job_getstr(18);
	j->pid = s ? atoi(s) : 0;
}

/*
 * UPDATE the job row of migration id: "SET <assignments>"; $1 is the
 * migration, the values given are $2, $3, ...
 */
static void
job_set(int64 id, const char *assignments, int nargs, Oid *types, Datum *values, const char *nulls)
{
	Oid			t[10];
	Datum		v[10];
	char		n[11];
	int			i;

	Assert(nargs < 10);
	t[0] = INT8OID;
	v[0] = Int64GetDatum(id);
	n[0] = ' ';
	for (i = 0; i < nargs; i++)
	{
		t[i + 1] = types[i];
		v[i + 1] = values[i];
		n[i + 1] = nulls ? nulls[i] : ' ';
	}
	n[nargs + 1] = '\0';
	cu_catalog_exec(psprintf("UPDATE customer_unify.job j SET %s, updated_at = pg_catalog.clock_timestamp() "
							 "WHERE j.migration_id OPERATOR(pg_catalog.=) $1", assignments),
					nargs + 1, t, v, n, SPI_OK_UPDATE);
}

/* job_set with one text value ($2), NULL when value is NULL */
static void
job_set_text(int64 id, const char *assignments, const char *value)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {value ? CStringGetTextDatum(value) : (Datum) 0};

	job_set(id, assignments, 1, types, values, value ? " " : "n");
}

/* ------------------------------------------------------ the worker's lock */

static void
job_locktag(LOCKTAG *tag, int64 id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, JOB_LOCK_CLASS, (uint32) id, 2);
}

/* Does a worker of this migration's job live?  (It holds the job's lock.) */
static bool
job_worker_alive(int64 id)
{
	LOCKTAG		tag;

	job_locktag(&tag, id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, ExclusiveLock, true);
	return false;
}

/* "running", or "interrupted" when its worker is gone; other states as they are */
static const char *
job_effective_state(int64 id, JobRow *j)
{
	if ((strcmp(j->state, "running") == 0 || strcmp(j->state, "starting") == 0) && !job_worker_alive(id))
	{
		JobRow		now;

		/*
		 * The worker commits its last state, then exits: it may have ended
		 * after j was read.  Read the row again (a new snapshot).
		 */
		job_read(id, false, &now);
		if (now.found && strcmp(now.state, "running") != 0 && strcmp(now.state, "starting") != 0)
			return now.state;
		return "interrupted";
	}
	return j->state;
}

/*
 * A phase run by hand (start, cutover, finalize, rollback, ...) while a
 * job's worker is at work on the same migration is refused: the two would
 * race over its tables (a rollback dropping the table a batch or a CREATE
 * INDEX CONCURRENTLY is writing).  The worker itself holds the lock and is
 * not refused.
 */
void
cu_job_refuse_if_running(int64 id, const char *name, const char *phase)
{
	if (job_worker_alive(id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot run %s of migration \"%s\": its job is running", phase, name),
				 errdetail("A background worker runs the migration's phases; two at once would race over its tables."),
				 errhint("Stop the job first: SELECT customer_unify.pause(%s); (or cancel), and wait until customer_unify.jobs shows it paused.",
						 quote_literal_cstr(name))));
}

PG_FUNCTION_INFO_V1(cu_job_alive);

/* customer_unify._job_alive(migration bigint): does a worker of its job live? */
Datum
cu_job_alive(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(job_worker_alive(PG_GETARG_INT64(0)));
}

/* ------------------------------------------------------ starting a worker */

/*
 * Start a worker for the job of migration id at generation gen, running as
 * the migration's owner.  Waits until the worker holds the job's lock
 * (milliseconds), so that from then on the job counts as running.
 */
static int
job_start_worker(int64 id, const char *name, int32 gen, const char *owner)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	JobArgs		args;
	pid_t		pid;
	HeapTuple	tup;
	Oid			role = get_role_oid(owner, false);
	int			waited;

	/* the worker logs in as the owner: a role without LOGIN could not */
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "customer_unify: role %u not found", role);
	if (!((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot launch a job for migration \"%s\": its owner %s cannot log in", name,
						quote_identifier(owner)),
				 errdetail("A job's worker connects as the migration's owner."),
				 errhint("ALTER ROLE %s LOGIN, or run the phases in the foreground.", quote_identifier(owner))));
	}
	ReleaseSysCache(tup);

	memset(&args, 0, sizeof(args));
	args.migration_id = id;
	args.generation = gen;
	args.launcher_xid = GetTopTransactionId();
	args.database = MyDatabaseId;
	args.role = role;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "customer_unify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cu_job_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "customer_unify job %s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "customer_unify job");
	worker.bgw_main_arg = Int64GetDatum(id);
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for the job of migration \"%s\"", name),
				 errdetail("All %d background worker slots (max_worker_processes) are in use.", max_worker_processes),
				 errhint("Raise max_worker_processes (it needs a restart), wait for other jobs to finish, "
						 "or run CALL customer_unify.backfill(...) in the foreground.")));
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the background worker for the job of migration \"%s\" did not start", name),
				 errhint(status == BGWH_POSTMASTER_DIED ? "The postmaster died." : "See the server log.")));
	/* until the worker holds its lock it would look interrupted */
	for (waited = 0; waited < JOB_START_WAIT_MS && !job_worker_alive(id); waited += 10)
	{
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the background worker for the job of migration \"%s\" stopped at once", name),
					 errhint("See the server log.")));
		cu_sleep_ms(10);
	}
	return (int) pid;
}

/*
 * Start (or, resume, start again) the job of a migration whose job row is
 * locked: a new generation, so that a worker of an older one leaves.
 */
static void
job_start(int64 id, JobRow *j, bool resume)
{
	int32		gen = j->generation + 1;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(gen), CStringGetTextDatum(j->owner)};
	int			pid;

	job_set(id, psprintf("state = 'starting', request = NULL, generation = $2, role = $3, pid = NULL, "
						 "phase = NULL, finished_at = NULL, last_error = NULL, last_sqlstate = NULL, "
						 "launched_at = pg_catalog.clock_timestamp()%s",
						 resume ? "" : ", started_at = NULL, throttled_ms = 0, throttle_reason = NULL"),
			2, types, values, NULL);
	/* a launch or resume tries the indexes that failed again */
	cu_catalog_exec("UPDATE customer_unify.job_index x SET state = 'planned', last_error = NULL "
						"WHERE x.migration_id OPERATOR(pg_catalog.=) $1 AND x.state OPERATOR(pg_catalog.=) 'failed'",
						1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, SPI_OK_UPDATE);
	pid = job_start_worker(id, j->name, gen, j->owner);
	job_set(id, "pid = COALESCE(j.pid, $2)", 1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(pid)}, NULL);
}

/* Has the migration indexes planned (or failed) that its job has to build? */
static bool
job_has_indexes_to_build(int64 id)
{
	if (SPI_execute_with_args("SELECT 1 FROM customer_unify.job_index x WHERE x.migration_id OPERATOR(pg_catalog.=) $1 "
							  "AND x.state OPERATOR(pg_catalog.<>) 'built'",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: reading the job's indexes failed");
	return SPI_processed > 0;
}

/*
 * A pause or cancel is seen between two batches or phases; a CREATE INDEX
 * CONCURRENTLY of the job may wait much longer (for every transaction older
 * than it).  So when the job is building an index, the worker's statement
 * is cancelled once the request is committed (not before: the worker must
 * find the request when it handles the cancel): the build fails, its INVALID
 * index is dropped, and the job ends paused or cancelled; resume builds it
 * again.
 */
static int	job_interrupt_pid = 0;

static void
job_interrupt_at_commit(XactEvent event, void *arg)
{
	/* no error may be raised here: the caller's rights were checked, the worker is ours */
	if (event == XACT_EVENT_COMMIT && job_interrupt_pid != 0 && BackendPidGetProc(job_interrupt_pid) != NULL)
		(void) kill(job_interrupt_pid, SIGINT);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
	{
		job_interrupt_pid = 0;
		UnregisterXactCallback(job_interrupt_at_commit, NULL);
	}
}

static void
job_interrupt_index_build_at_commit(JobRow *j)
{
	if (j->phase == NULL || strncmp(j->phase, "index ", 6) != 0 || j->pid <= 0 || job_interrupt_pid != 0)
		return;
	job_interrupt_pid = j->pid;
	RegisterXactCallback(job_interrupt_at_commit, NULL);
}

/* ------------------------------------------------- the SQL control entry points */

/* The migration by name, the caller's right to act for it, its job row locked (created if missing). */
static int64
job_control_begin(FunctionCallInfo fcinfo, const char *action, JobRow *j)
{
	char	   *name;
	int64		id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SPI_connect();
	id = cu_migration_id_by_name(name);
	cu_check_rights(id, action);
	cu_catalog_exec("INSERT INTO customer_unify.job (migration_id) VALUES ($1) ON CONFLICT (migration_id) DO NOTHING",
					1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, SPI_OK_INSERT);
	job_read(id, true, j);
	if (!j->found)
		elog(ERROR, "customer_unify: the job row of migration %lld is missing", (long long) id);
	return id;
}

static Datum
job_control_end(const char *result)
{
	text	   *t = cstring_to_text(result);

	SPI_finish();
	PG_RETURN_TEXT_P(t);
}

/* A job whose worker is (or is about to be) at work */
static bool
job_running(const char *state)
{
	return job_streq(state, "running") || job_streq(state, "starting");
}

/* A job that resume() continues */
static bool
job_resumable(const char *state)
{
	return job_streq(state, "paused") || job_streq(state, "interrupted") || job_streq(state, "failed");
}

/* what a job in state may be asked to do next, for hints */
static const char *
job_next_hint(const char *state)
{
	if (job_running(state))
		return "Pause or cancel it first: customer_unify.pause(...) / customer_unify.cancel(...).";
	if (job_resumable(state))
		return "Continue it with customer_unify.resume(...), or end it with customer_unify.cancel(...).";
	return "Start one with customer_unify.launch(...).";
}

/* "cannot <action> the job of migration "x": <why>" (55006 when it is running, else 55000) */
static void
job_refuse(JobRow *j, const char *action, const char *state, const char *why)
{
	ereport(ERROR,
			(errcode(job_running(state) ? ERRCODE_OBJECT_IN_USE : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s the job of migration \"%s\": %s", action, j->name, why),
			 errdetail("The job is %s%s; the migration is %s.", job_streq(state, "idle") ? "not launched" : state,
					   j->request ? psprintf(" (%s requested)", j->request) : "", j->migration_state),
			 errhint("%s", job_next_hint(state))));
}

PG_FUNCTION_INFO_V1(cu_job_launch);

/* customer_unify.launch(name, until, batch_size, lock_timeout_ms) -> job state */
Datum
cu_job_launch(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id;
	char	   *until = PG_ARGISNULL(1) ? "backfilled" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		batch_size = PG_ARGISNULL(2) ? 10000 : PG_GETARG_INT32(2);
	int32		lock_timeout_ms = PG_ARGISNULL(3) ? 2000 : PG_GETARG_INT32(3);
	const char *state;

	if (job_state_index(until) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid until \"%s\"", until),
				 errhint("A job runs until one of: started, backfilled, verified, cut_over, finalized.")));
	if (batch_size <= 0 || lock_timeout_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size and lock_timeout_ms must be positive, not %d and %d", batch_size, lock_timeout_ms)));
	id = job_control_begin(fcinfo, "launch a job of", &j);
	state = job_effective_state(id, &j);
	if (job_running(state))
		job_refuse(&j, "launch", state, "it is already running");
	if (job_streq(state, "paused") || job_streq(state, "interrupted"))
		job_refuse(&j, "launch", state, psprintf("its job is %s", state));
	/* at until already: only indexes the job still has to build (after a foreground backfill) */
	if (job_state_index(j.migration_state) < 0 ||
		(job_state_index(j.migration_state) >= job_state_index(until) &&
		 !(job_state_index(j.migration_state) >= job_state_index("backfilled") &&
		   job_state_index(j.migration_state) < job_state_index("finalized") && job_has_indexes_to_build(id))))
		job_refuse(&j, "launch", state, psprintf("the migration is %s, nothing to run until %s", j.migration_state, until));
	job_set(id, "until = $2, batch_size = $3, lock_timeout_ms = $4", 3,
			(Oid[]) {TEXTOID, INT4OID, INT4OID},
			(Datum[]) {CStringGetTextDatum(until), Int32GetDatum(batch_size), Int32GetDatum(lock_timeout_ms)},
			NULL);
	job_start(id, &j, false);
	return job_control_end("starting");
}

PG_FUNCTION_INFO_V1(cu_job_pause);

/* customer_unify.pause(name): the worker stops after its current batch or phase */
Datum
cu_job_pause(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id = job_control_begin(fcinfo, "pause the job of", &j);
	const char *state = job_effective_state(id, &j);

	if (!job_running(state))
		job_refuse(&j, "pause", state, "it is not running");
	if (job_streq(j.request, "cancel"))
		job_refuse(&j, "pause", "cancelling", "it is being cancelled");
	job_set_text(id, "request = $2", "pause");
	job_interrupt_index_build_at_commit(&j);
	return job_control_end("pausing");
}

PG_FUNCTION_INFO_V1(cu_job_resume);

/*
 * customer_unify.resume(name): start a paused, interrupted or failed job
 * again from the engine's checkpoint (or take back a pause not yet taken).
 */
Datum
cu_job_resume(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id = job_control_begin(fcinfo, "resume the job of", &j);
	const char *state = job_effective_state(id, &j);

	if (job_running(state) && job_streq(j.request, "pause"))
	{
		job_set_text(id, "request = $2", NULL);
		return job_control_end("running");
	}
	if (job_running(state))
		job_refuse(&j, "resume", state, "it is already running");
	if (!job_resumable(state))
		job_refuse(&j, "resume", state, job_streq(state, "idle") ? "it is not launched" : psprintf("it is %s", state));
	if (job_state_index(j.migration_state) < 0)
		job_refuse(&j, "resume", state, psprintf("the migration is %s", j.migration_state));
	job_start(id, &j, true);
	return job_control_end("starting");
}

PG_FUNCTION_INFO_V1(cu_job_cancel);

/* customer_unify.cancel(name): stop the job for good (the migration keeps its checkpoint) */
Datum
cu_job_cancel(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id = job_control_begin(fcinfo, "cancel the job of", &j);
	const char *state = job_effective_state(id, &j);

	if (job_running(state))
	{
		job_set_text(id, "request = $2", "cancel");
		job_interrupt_index_build_at_commit(&j);
		return job_control_end("cancelling");
	}
	if (!job_resumable(state))
		job_refuse(&j, "cancel", state, job_streq(state, "idle") ? "it is not launched" : psprintf("it is %s", state));
	job_set(id, "state = 'cancelled', request = NULL, finished_at = pg_catalog.clock_timestamp()",
			0, NULL, NULL, NULL);
	return job_control_end("cancelled");
}

PG_FUNCTION_INFO_V1(cu_job_set_throttle);

/*
 * customer_unify.set_throttle(name, nice, chunk_ms, max_lag_bytes,
 * window_start, window_end, throttle_query): the job's throttling, all at
 * once (NULL: off); a running job uses it from its next batch.
 */
Datum
cu_job_set_throttle(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id;
	Oid			types[8] = {FLOAT8OID, INT4OID, INT8OID, TIMEOID, TIMEOID, TEXTOID, INT4OID, INT8OID};
	Datum		values[8];
	char		nulls[8];
	int			i;

	for (i = 0; i < 8; i++)
	{
		nulls[i] = PG_ARGISNULL(i + 1) ? 'n' : ' ';
		values[i] = PG_ARGISNULL(i + 1) ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
	}
	if ((!PG_ARGISNULL(1) && (PG_GETARG_FLOAT8(1) < 0 || isnan(PG_GETARG_FLOAT8(1)) || isinf(PG_GETARG_FLOAT8(1)))) ||
		(!PG_ARGISNULL(2) && PG_GETARG_INT32(2) <= 0) ||
		(!PG_ARGISNULL(3) && PG_GETARG_INT64(3) <= 0) ||
		(!PG_ARGISNULL(7) && PG_GETARG_INT32(7) < 0) ||
		(!PG_ARGISNULL(8) && PG_GETARG_INT64(8) <= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nice must be finite and not negative, max_lock_waits not negative, chunk_ms, max_lag_bytes and max_wal_bytes_per_sec positive"),
				 errhint("NULL turns a throttle off.")));
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window_start and window_end go together"),
				 errhint("Give both (a window may pass midnight: 22:00 .. 06:00) or neither.")));
	id = job_control_begin(fcinfo, "throttle the job of", &j);
	if (!PG_ARGISNULL(3) &&
		!has_privs_of_role(get_role_oid(j.owner, false),
#if PG_VERSION_NUM >= 140000
						   ROLE_PG_READ_ALL_STATS
#else
						   DEFAULT_ROLE_READ_ALL_STATS
#endif
						   ))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("max_lag_bytes needs the job's role %s to read the replication lag", quote_identifier(j.owner)),
				 errdetail("The worker reads pg_stat_replication.replay_lsn as the migration's owner; without pg_read_all_stats it reads NULL."),
				 errhint("GRANT pg_read_all_stats TO %s;", quote_identifier(j.owner))));
	if (!PG_ARGISNULL(6))
	{
		/* the DBA's hold query: run once now, as the caller, to see it answers one boolean */
		char	   *q = text_to_cstring(PG_GETARG_TEXT_PP(6));
		int			rc = SPI_execute(q, true, 2);

		if (rc != SPI_OK_SELECT || SPI_processed != 1 || SPI_tuptable->tupdesc->natts != 1 ||
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) != BOOLOID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("throttle_query must return one row of one boolean column"),
					 errdetail("The job holds while it returns true."),
					 errhint("For example: SELECT count(*) > 50 FROM pg_stat_activity WHERE state = 'active'")));
	}
	job_set(id, "nice = $2, chunk_ms = $3, max_lag_bytes = $4, window_start = $5, window_end = $6, throttle_query = $7, "
			"max_lock_waits = $8, max_wal_bytes_per_sec = $9",
			8, types, values, nulls);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------ the worker */

/* A transaction of the worker with an SPI connection and a snapshot. */
static void
job_xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
job_xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Read the job in a transaction of its own; the row's strings live in cxt. */
static void
job_read_own(JobRow *j, MemoryContext cxt)
{
	MemoryContext old;

	job_xact_begin();
	old = MemoryContextSwitchTo(cxt);
	job_read(job_args.migration_id, false, j);
	MemoryContextSwitchTo(old);
	job_xact_end();
}

/* One job row update in a transaction of its own. */
static void
job_set_text_own(const char *assignments, const char *value)
{
	job_xact_begin();
	job_set_text(job_args.migration_id, assignments, value);
	job_xact_end();
}

/*
 * Run sql as a client's top-level statement (in a portal, as
 * exec_simple_query does), with typed parameters: a CALL of a procedure
 * that commits, which SPI could only run atomically, or a CREATE INDEX
 * CONCURRENTLY, which commits on its own and may run in no transaction
 * block.
 */
static void
job_exec_toplevel(const char *sql, CommandTag tag, int nargs, Oid *types, Datum *values, MemoryContext cxt)
{
	MemoryContext old;
	List	   *raw;
	List	   *queries;
	List	   *plans;
	ParamListInfo params;
	Portal		portal;
	DestReceiver *dest;
	QueryCompletion qc;
	int16		format = 0;
	int			i;

	old = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);	/* outlives the procedure's commits */
	debug_query_string = sql;
	pgstat_report_activity(STATE_RUNNING, sql);
	raw = pg_parse_query(sql);
	if (list_length(raw) != 1)
		elog(ERROR, "customer_unify: a job statement must be one statement");
	PushActiveSnapshot(GetTransactionSnapshot());
#if PG_VERSION_NUM >= 150000
	queries = pg_analyze_and_rewrite_fixedparams(linitial_node(RawStmt, raw), sql, types, nargs, NULL);
#else
	queries = pg_analyze_and_rewrite(linitial_node(RawStmt, raw), sql, types, nargs, NULL);
#endif
	params = makeParamList(nargs);
	for (i = 0; i < nargs; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	params->numParams = nargs;
	plans = pg_plan_queries(queries, sql, CURSOR_OPT_PARALLEL_OK, params);
	PopActiveSnapshot();

	portal = CreatePortal("customer_unify job", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, tag, plans, NULL);
	PortalStart(portal, params, 0, InvalidSnapshot);
	PortalSetResultFormat(portal, 1, &format);
	dest = CreateDestReceiver(DestNone);
	(void) PortalRun(portal, FETCH_ALL, true, true, dest, dest, &qc);
	dest->rDestroy(dest);
	PortalDrop(portal, false);
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(cxt);
}

/* One engine call with the migration's name, in a transaction of its own; returns the first column */
static char *
job_exec_phase(const char *sql, const char *name, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	char	   *result = NULL;
	int			rc;

	job_xact_begin();
	pgstat_report_activity(STATE_RUNNING, sql);
	rc = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "customer_unify: job statement failed (%s): %s", SPI_result_code_string(rc), sql);
	if (SPI_processed > 0)
		result = MemoryContextStrdup(cxt, job_getstr(1) ? job_getstr(1) : "");
	job_xact_end();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

/*
 * Lock requests that wait, now, on the relations of the worker's migration
 * (its source and every relation it registered, live): relation, tuple and
 * page locks not granted.  A writer queued behind another writer's row lock
 * shows as a tuple lock of that table; the first waiter of a row waits on a
 * transaction id, which names no table, and is not counted.
 */
static int64
job_lock_waits(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args("SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l "
							  "WHERE NOT l.granted AND l.database OPERATOR(pg_catalog.=) "
							  "(SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) "
							  "AND l.relation OPERATOR(pg_catalog.=) ANY (ARRAY("
							  "SELECT r.relid::pg_catalog.oid FROM customer_unify.migration_relation r "
							  "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.live "
							  "UNION SELECT m.source::pg_catalog.oid FROM customer_unify.migration m "
							  "WHERE m.id OPERATOR(pg_catalog.=) $1 AND m.source IS NOT NULL))",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(job_args.migration_id)}, NULL, true, 1)
		!= SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "customer_unify: counting the lock waits failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* Why the job holds now (window, replication lag, lock waits, the DBA's query), or NULL.  With SPI. */
static const char *
job_hold_reason(JobRow *j)
{
	int			rc;
	bool		isnull;

	if (!j->in_window)
		return "outside its time window";
	if (j->max_lag_bytes > 0)
	{
		rc = SPI_execute("SELECT pg_catalog.max(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn))::pg_catalog.int8 "
						 "FROM pg_catalog.pg_stat_replication r", true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			Datum		lag = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull && DatumGetInt64(lag) > j->max_lag_bytes)
				return psprintf("replication lag %lld bytes over max_lag_bytes", (long long) DatumGetInt64(lag));
		}
	}
	if (j->max_lock_waits >= 0)
	{
		int64		waits = job_lock_waits();

		if (waits > j->max_lock_waits)
			return psprintf("%lld lock requests wait on its tables, over max_lock_waits", (long long) waits);
	}
	if (j->throttle_query != NULL)
	{
		rc = SPI_execute(j->throttle_query, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1 || SPI_tuptable->tupdesc->natts != 1 ||
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) != BOOLOID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("throttle_query of migration \"%s\" did not return one boolean", j->name),
					 errhint("Fix it with customer_unify.set_throttle(...) and resume the job.")));
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull)
			return "throttle_query returned true";
	}
	return NULL;
}

/* The job holds for reason: say so and count the time. */
static void
job_note_hold(const char *reason)
{
	job_set(job_args.migration_id,
			"throttle_reason = $2, throttled_ms = j.throttled_ms OPERATOR(pg_catalog.+) $3", 2,
			(Oid[]) {TEXTOID, INT8OID},
			(Datum[]) {CStringGetTextDatum(reason), Int64GetDatum(JOB_HOLD_POLL_MS)}, NULL);
}

/* Between two batches (the backfill's non-atomic SPI connection): wait while a hold says so; false: stop. */
static bool
job_hold(JobRow *j, MemoryContext cxt)
{
	for (;;)
	{
		const char *reason;

		if (j->generation != job_args.generation || j->request != NULL)
			return false;
		reason = job_hold_reason(j);
		if (reason == NULL)
			return true;
		job_note_hold(reason);
		SPI_commit();
		cu_sleep_ms(JOB_HOLD_POLL_MS);
		MemoryContextSwitchTo(cxt);
		job_read(job_args.migration_id, false, j);
	}
}

/*
 * Before a phase (the worker's top level): the same holds, so that a job
 * outside its window or behind lock waits does not start its DDL or its
 * first batch either; false when a request or a newer job came meanwhile.
 */
static bool
job_hold_before_phase(MemoryContext cxt)
{
	for (;;)
	{
		JobRow		j;
		const char *reason;

		job_xact_begin();
		MemoryContextSwitchTo(cxt);
		job_read(job_args.migration_id, false, &j);
		if (!j.found || j.generation != job_args.generation || j.request != NULL)
		{
			job_xact_end();
			return false;
		}
		reason = job_hold_reason(&j);
		if (reason != NULL)
			job_note_hold(reason);
		job_xact_end();
		if (reason == NULL)
			return true;
		cu_sleep_ms(JOB_HOLD_POLL_MS);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * cu_batch_hook of the worker: between two batches of its backfill (after
 * the batch's commit, in the backfill's SPI connection), read the job row;
 * stop on a request; hold while a throttle says so; adapt the batch size
 * to chunk_ms; sleep nice x the batch's time.
 */
static bool
job_between_batches(int64 migration_id, double batch_ms, int32 *batch_size)
{
	static MemoryContext hookcxt = NULL;
	MemoryContext old;
	JobRow		j;
	double		sleep_ms = 0;
	double		wal_sleep_ms = 0;
	const char *reason = NULL;
	int32		size = *batch_size;

	if (migration_id != job_args.migration_id)
		return true;
	if (hookcxt == NULL)
		hookcxt = AllocSetContextCreate(TopMemoryContext, "customer_unify job batch hook", ALLOCSET_SMALL_SIZES);
	MemoryContextReset(hookcxt);
	/* SPI_commit keeps the current context when it is not the transaction's */
	old = MemoryContextSwitchTo(hookcxt);
	job_read(migration_id, false, &j);
	if (!j.found || !job_hold(&j, hookcxt))
	{
		SPI_commit();
		MemoryContextSwitchTo(old);
		return false;
	}
	if (j.chunk_ms > 0 && batch_ms > 0)
	{
		double		f = j.chunk_ms / batch_ms;

		f = Max(0.5, Min(2.0, f));
		size = (int32) Max(1.0, Min(1000000.0, size * f));
	}
	if (j.nice > 0)
	{
		sleep_ms = j.nice * batch_ms;
		reason = "nice";
	}
	if (j.max_wal_bytes_per_sec > 0)
	{
		/* the WAL this worker wrote since the last look, at most the cap per second */
		double		bytes = (double) (pgWalUsage.wal_bytes - job_wal_mark_bytes);
		double		elapsed_ms = (double) (GetCurrentTimestamp() - job_wal_mark_time) / 1000.0;

		wal_sleep_ms = Min(bytes * 1000.0 / j.max_wal_bytes_per_sec - elapsed_ms, JOB_WAL_SLEEP_MAX_MS);
		if (wal_sleep_ms > sleep_ms)
		{
			sleep_ms = wal_sleep_ms;
			reason = "max_wal_bytes_per_sec";
		}
	}
	if (sleep_ms < 1)
	{
		sleep_ms = 0;
		reason = NULL;
	}
	job_set(migration_id,
			"batch_size = $2, throttled_ms = j.throttled_ms OPERATOR(pg_catalog.+) $3, throttle_reason = $4", 3,
			(Oid[]) {INT4OID, INT8OID, TEXTOID},
			(Datum[]) {Int32GetDatum(size), Int64GetDatum((int64) sleep_ms),
			reason ? CStringGetTextDatum(reason) : (Datum) 0}, reason ? "   " : "  n");
	SPI_commit();
	/* sleep in steps, so that a pause or cancel ends a long sleep */
	while (sleep_ms > 0)
	{
		double		step = Min(sleep_ms, (double) JOB_HOLD_POLL_MS);

		cu_sleep_ms((int) step);
		sleep_ms -= step;
		if (sleep_ms <= 0)
			break;
		MemoryContextSwitchTo(hookcxt);
		job_read(migration_id, false, &j);
		SPI_commit();
		if (!j.found || j.generation != job_args.generation || j.request != NULL)
		{
			MemoryContextSwitchTo(old);
			return false;
		}
	}
	MemoryContextSwitchTo(old);
	*batch_size = size;
	job_wal_mark();
	return true;
}

/* Run the next phase of the migration (its state is j->migration_state). */
static void
job_run_phase(JobRow *j, MemoryContext cxt)
{
	const char *state = j->migration_state;
	static const char *const phases[] = {"start", "backfill", "verify", "cutover", "finalize", NULL};
	int			k = job_state_index(state);

	/* the phase it runs now, as the engine names it (start from planned, backfill from started, ...) */
	job_set_text_own("phase = $2", k >= 0 && k < 5 ? phases[k] : state);
	if (strcmp(state, "planned") == 0)
		(void) job_exec_phase("SELECT customer_unify.start($1)", j->name, cxt);
	else if (strcmp(state, "started") == 0)
	{
		Oid			types[3] = {TEXTOID, INT4OID, INT4OID};
		Datum		values[3] = {CStringGetTextDatum(j->name), Int32GetDatum(j->batch_size),
		Int32GetDatum(j->lock_timeout_ms)};

		cu_batch_hook = job_between_batches;
		job_wal_mark();
		job_exec_toplevel("CALL customer_unify.backfill($1, batch_size => $2, lock_timeout_ms => $3)",
						  CMDTAG_CALL, 3, types, values, cxt);
		cu_batch_hook = NULL;
	}
	else if (strcmp(state, "backfilled") == 0)
	{
		char	   *failed = job_exec_phase("SELECT pg_catalog.string_agg(v.check_name, ', ' ORDER BY v.check_name) "
											"FROM customer_unify.verify($1) v WHERE NOT v.ok", j->name, cxt);

		if (failed != NULL && failed[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION),
					 errmsg("verification of migration \"%s\" failed", j->name),
					 errdetail("Failing checks: %s.", failed),
					 errhint("Inspect SELECT * FROM customer_unify.verify(%s);", quote_literal_cstr(j->name))));
	}
	else if (strcmp(state, "verified") == 0)
		(void) job_exec_phase("SELECT customer_unify.cutover($1)", j->name, cxt);
	else if (strcmp(state, "cut_over") == 0)
		(void) job_exec_phase("SELECT customer_unify.finalize($1)", j->name, cxt);
	else
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the job of migration \"%s\" stopped: the migration is %s", j->name, state)));
}

/* ------------------------------------------------------ concurrent indexes */

/*
 * The live relation of a migration by tag (InvalidOid if none): one it
 * created, for the DBA's add_index; any of its tables for an index its
 * operation planned on a column it added (a rekey's new key), which
 * rollback drops with the column.
 */
static Oid
job_relation(int64 id, const char *tag, bool created_only)
{
	Oid			types[3] = {INT8OID, TEXTOID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(id), CStringGetTextDatum(tag), BoolGetDatum(created_only)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT r.relid::pg_catalog.oid FROM customer_unify.migration_relation r "
							  "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid "
							  "WHERE r.migration_id OPERATOR(pg_catalog.=) $1 AND r.tag OPERATOR(pg_catalog.=) $2 "
							  "AND (r.created OR NOT $3) AND r.live AND c.relkind OPERATOR(pg_catalog.=) 'r'",
							  3, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return InvalidOid;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

PG_FUNCTION_INFO_V1(cu_job_add_index);

/*
 * customer_unify.add_index(name, columns, is_unique, relation_tag,
 * index_name) -> index name: an index the job builds with CREATE [UNIQUE]
 * INDEX CONCURRENTLY on a table the migration created, once the copy is in
 * (before verify), so that the backfill does not maintain it and the
 * build blocks no writer.
 */
Datum
cu_job_add_index(PG_FUNCTION_ARGS)
{
	JobRow		j;
	int64		id;
	ArrayType  *cols;
	Datum	   *elems;
	bool	   *nulls;
	int			ncols,
				i;
	const char *tag = PG_ARGISNULL(3) ? "target" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		is_unique = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	const char *as_constraint = PG_NARGS() > 5 && !PG_ARGISNULL(5) ? text_to_cstring(PG_GETARG_TEXT_PP(5)) : NULL;
	bool		primary = job_streq(as_constraint, "primary key");
	Oid			relid;
	Relation	rel;
	StringInfoData name;
	AttrNumber	attnum;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the columns of the index must not be null")));
	cols = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(cols, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &ncols);
	if (ncols == 0 || ARR_NDIM(cols) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an index needs at least one column"),
				 errhint("columns => ARRAY['email']")));
	if (as_constraint != NULL && !primary && strcmp(as_constraint, "unique") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_constraint must be 'primary key' or 'unique', not \"%s\"", as_constraint),
				 errhint("NULL builds a plain index.")));
	if (as_constraint != NULL && !is_unique)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an index attached as a %s constraint must be unique", as_constraint),
				 errhint("is_unique => true")));
	id = job_control_begin(fcinfo, "add an index to the job of", &j);
	relid = job_relation(id, tag, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\" has no live table \"%s\" that it created", j.name, tag),
				 errdetail("A job builds indexes only on the tables its migration created (start makes them), which rollback drops."),
				 errhint("Start the migration first; the tag of a split's new table is 'target'.")));
	rel = table_open(relid, AccessShareLock);
	initStringInfo(&name);
	appendStringInfoString(&name, RelationGetRelationName(rel));
	for (i = 0; i < ncols; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a column of the index must not be null")));
		attnum = cu_attnum_or_error(rel, TextDatumGetCString(elems[i]));
		if (primary && !TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attnotnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("column \"%s\" of %s is not NOT NULL, so it cannot be part of a primary key",
							TextDatumGetCString(elems[i]), RelationGetRelationName(rel)),
					 errdetail("Attaching the index would scan the table under an exclusive lock to check for nulls."),
					 errhint("Attach it as a unique constraint instead: as_constraint => 'unique'.")));
		appendStringInfo(&name, "_%s", TextDatumGetCString(elems[i]));
	}
	if (primary && OidIsValid(RelationGetPrimaryKeyIndex(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("%s already has a primary key", RelationGetRelationName(rel)),
				 errdetail("Its primary key is index %s.", get_rel_name(RelationGetPrimaryKeyIndex(rel))),
				 errhint("Attach the index as a unique constraint instead: as_constraint => 'unique'.")));
	appendStringInfoString(&name, primary ? "_pkey" : "_idx");
	if (!PG_ARGISNULL(4))
	{
		resetStringInfo(&name);
		appendStringInfoString(&name, text_to_cstring(PG_GETARG_TEXT_PP(4)));
	}
	name.data[pg_mbcliplen(name.data, name.len, NAMEDATALEN - 1)] = '\0';
	if (primary)
	{
		/* one primary key per table: none there, none other planned */
		if (SPI_execute_with_args("SELECT x.index_name::pg_catalog.text FROM customer_unify.job_index x "
								  "WHERE x.migration_id OPERATOR(pg_catalog.=) $1 AND x.relation_tag OPERATOR(pg_catalog.=) $2 "
								  "AND x.as_constraint OPERATOR(pg_catalog.=) 'primary key' AND x.index_name OPERATOR(pg_catalog.<>) $3",
								  3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
								  (Datum[]) {Int64GetDatum(id), CStringGetTextDatum(tag), CStringGetTextDatum(name.data)},
								  NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "customer_unify: reading the job's indexes failed");
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("a primary key of %s is planned already: %s", RelationGetRelationName(rel), job_getstr(1)),
					 errhint("Attach this index as a unique constraint instead: as_constraint => 'unique'.")));
	}
	if (OidIsValid(get_relname_relid(name.data, RelationGetNamespace(rel))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists in schema \"%s\"", name.data,
						get_namespace_name(RelationGetNamespace(rel))),
				 errhint("Give the index another name: index_name => ...")));
	table_close(rel, AccessShareLock);
	cu_catalog_exec("INSERT INTO customer_unify.job_index AS x (migration_id, index_name, relation_tag, columns, is_unique, as_constraint) "
					"VALUES ($1, $2, $3, $4::pg_catalog.name[], $5, $6) ON CONFLICT (migration_id, index_name) DO UPDATE "
					"SET relation_tag = EXCLUDED.relation_tag, columns = EXCLUDED.columns, is_unique = EXCLUDED.is_unique, "
					"as_constraint = EXCLUDED.as_constraint, state = 'planned', last_error = NULL, built_at = NULL",
					6, (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTARRAYOID, BOOLOID, TEXTOID},
					(Datum[]) {Int64GetDatum(id), CStringGetTextDatum(name.data), CStringGetTextDatum(tag),
					PointerGetDatum(cols), BoolGetDatum(is_unique),
					as_constraint ? CStringGetTextDatum(as_constraint) : (Datum) 0},
					as_constraint ? NULL : "     n", SPI_OK_INSERT);
	return job_control_end(name.data);
}

/* DROP INDEX CONCURRENTLY of an index a failed build left INVALID, if there is one */
static void
job_drop_invalid_index(Oid nsp, const char *name, MemoryContext cxt)
{
	Oid			indexid;
	HeapTuple	tup;
	char	   *qualified = NULL;

	StartTransactionCommand();
	indexid = get_relname_relid(name, nsp);
	tup = OidIsValid(indexid) ? SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid)) : NULL;
	if (HeapTupleIsValid(tup))
	{
		if (!((Form_pg_index) GETSTRUCT(tup))->indisvalid)
			qualified = MemoryContextStrdup(cxt, quote_qualified_identifier(get_namespace_name(nsp), name));
		ReleaseSysCache(tup);
	}
	CommitTransactionCommand();
	if (qualified != NULL)
		job_exec_toplevel(psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", qualified),
						  CMDTAG_DROP_INDEX, 0, NULL, NULL, cxt);
}

/* The relation's owner and replica identity (pg_class.relowner, relreplident). */
static void
job_rel_owner_replident(Oid relid, Oid *owner, char *ident)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	*owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	*ident = ((Form_pg_class) GETSTRUCT(tup))->relreplident;
	ReleaseSysCache(tup);
}

/*
 * The index that serves the planned index (customer_unify._job_index_match):
 * *found and *attached, and its name (in TopMemoryContext).  In a transaction.
 */
static char *
job_index_match(const char *index_name, bool *found, bool *attached)
{
	*found = *attached = false;
	if (SPI_execute_with_args("SELECT m.index_name::pg_catalog.text, m.attached "
							  "FROM customer_unify._job_index_match($1, $2) m",
							  2, (Oid[]) {INT8OID, TEXTOID},
							  (Datum[]) {Int64GetDatum(job_args.migration_id), CStringGetTextDatum(index_name)},
							  NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "customer_unify: matching the planned index failed");
	if (SPI_processed == 0)
		return NULL;
	*found = true;
	*attached = job_streq(job_getstr(2), "t");
	return MemoryContextStrdup(TopMemoryContext, job_getstr(1));
}

/*
 * ALTER TABLE ... ADD CONSTRAINT ... USING INDEX: a brief lock, taken with
 * the job's lock_timeout and tried again (backing off) while another
 * session holds the table, so that no writer queues behind a long wait.
 */
static void
job_attach_index(const char *sql, JobRow *j)
{
	int			attempt;

	for (attempt = 1;; attempt++)
	{
		MemoryContext old = CurrentMemoryContext;

		PG_TRY();
		{
			job_xact_begin();
			(void) set_config_option("lock_timeout", psprintf("%d", j->lock_timeout_ms), PGC_USERSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
			pgstat_report_activity(STATE_RUNNING, sql);
			if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "customer_unify: attaching an index failed");
			job_xact_end();
			pgstat_report_activity(STATE_IDLE, NULL);
			return;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(old);
			if (geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE || attempt >= JOB_ATTACH_ATTEMPTS)
				PG_RE_THROW();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		cu_sleep_ms(cu_backoff_ms(attempt, 2000));
	}
}

/*
 * Build the job's next planned index (CREATE [UNIQUE] INDEX CONCURRENTLY, a
 * top-level statement of the worker, as the owner); false when none is
 * left.  A build that fails leaves an INVALID index behind: it is dropped
 * (DROP INDEX CONCURRENTLY), the row marked failed, and the job fails with
 * the build's error; resume() tries again.  CREATE INDEX CONCURRENTLY waits
 * for every transaction older than its build to end, the launcher's too.
 */
static bool
job_build_next_index(JobRow *j, MemoryContext cxt)
{
	char	   *index_name = NULL;
	char	   *sql = NULL;
	const char *attach_kind = NULL;
	char	   *table_name = NULL;
	Oid			table_owner = InvalidOid;
	Oid			save_user;
	int			save_sec;
	Oid			relid = InvalidOid;
	Oid			nsp = InvalidOid;
	MemoryContext old;
	volatile bool failed = false;
	ErrorData  *edata = NULL;

	job_xact_begin();
	if (SPI_execute_with_args("SELECT x.index_name::pg_catalog.text, x.relation_tag, x.is_unique, "
							  "pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(c) FROM pg_catalog.unnest(x.columns) c), ', '), "
							  "x.as_constraint FROM customer_unify.job_index x WHERE x.migration_id OPERATOR(pg_catalog.=) $1 "
							  "AND x.state OPERATOR(pg_catalog.=) 'planned' ORDER BY x.index_name LIMIT 1",
							  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(job_args.migration_id)}, NULL, true, 1)
		== SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *tag = job_getstr(2);
		bool		is_unique = job_streq(job_getstr(3), "t");
		char	   *cols = job_getstr(4);
		char	   *constraint_type = job_getstr(5);
		char		replident;

		/* not in cxt: job_exec_toplevel resets it */
		index_name = MemoryContextStrdup(TopMemoryContext, job_getstr(1));
		relid = job_relation(job_args.migration_id, tag, false);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("the table \"%s\" of migration \"%s\" for index \"%s\" is gone", tag, j->name, index_name)));
		nsp = get_rel_namespace(relid);
		old = MemoryContextSwitchTo(TopMemoryContext);
		sql = psprintf("CREATE %sINDEX CONCURRENTLY %s ON %s (%s)", is_unique ? "UNIQUE " : "",
					   quote_identifier(index_name), cu_relation_qualified_name(relid), cols);
		job_rel_owner_replident(relid, &table_owner, &replident);
		/* a primary key takes back the row identity start lent to another unique index */
		if (constraint_type != NULL)
			attach_kind = strcmp(constraint_type, "primary key") != 0 ? "UNIQUE" :
				replident == REPLICA_IDENTITY_INDEX ? "PRIMARY KEY, REPLICA" : "PRIMARY KEY";
		table_name = pstrdup(cu_relation_qualified_name(relid));
		MemoryContextSwitchTo(old);
		job_set_text(job_args.migration_id, "phase = $2", psprintf("index %s", index_name));
	}
	job_xact_end();
	if (sql == NULL)
		return false;

	/*
	 * The index is the tables' business: built and attached as their owner,
	 * as the engine runs its steps (the job's role may be a member of that
	 * owner without inheriting its rights).
	 */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(table_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		bool		found,
					attached;
		char	   *serving;

		/* an INVALID index a failed or killed build left goes first */
		job_drop_invalid_index(nsp, index_name, cxt);

		/*
		 * A valid index that serves it already (a former run built it and was
		 * killed before it said so, or the DBA made it by hand) is kept, and
		 * attached if it is not yet; one of the planned name that does not
		 * serve it is refused.
		 */
		job_xact_begin();
		serving = job_index_match(index_name, &found, &attached);
		if (!found && OidIsValid(get_relname_relid(index_name, nsp)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("relation \"%s\" already exists and is not the index the job plans", index_name),
					 errdetail("The job plans %s on the columns it names; the existing relation differs.", sql),
					 errhint("Drop or rename it, or plan the index under another name with customer_unify.add_index(..., index_name => ...).")));
		job_xact_end();
		if (!found)
		{
			job_exec_toplevel(sql, CMDTAG_CREATE_INDEX, 0, NULL, NULL, cxt);
			serving = index_name;
		}
		if (attach_kind != NULL && !attached)
		{
			StringInfoData attach;

			initStringInfo(&attach);
			appendStringInfo(&attach, "ALTER TABLE %s ADD CONSTRAINT %s ", table_name, quote_identifier(serving));
			if (strcmp(attach_kind, "UNIQUE") == 0)
				appendStringInfo(&attach, "UNIQUE USING INDEX %s", quote_identifier(serving));
			else
				appendStringInfo(&attach, "PRIMARY KEY USING INDEX %s%s", quote_identifier(serving),
								 strstr(attach_kind, "REPLICA") ? ", REPLICA IDENTITY DEFAULT" : "");
			job_attach_index(attach.data, j);
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		PortalErrorCleanup();
		failed = true;
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_user, save_sec);

	job_xact_begin();
	cu_catalog_exec(failed
					? "UPDATE customer_unify.job_index x SET state = 'failed', last_error = $3 "
					"WHERE x.migration_id OPERATOR(pg_catalog.=) $1 AND x.index_name OPERATOR(pg_catalog.=) $2"
					: "UPDATE customer_unify.job_index x SET state = 'built', built_at = pg_catalog.clock_timestamp() "
					"WHERE x.migration_id OPERATOR(pg_catalog.=) $1 AND x.index_name OPERATOR(pg_catalog.=) $2 AND $3 IS NULL",
					3, (Oid[]) {INT8OID, TEXTOID, TEXTOID},
					(Datum[]) {Int64GetDatum(job_args.migration_id), CStringGetTextDatum(index_name),
					failed ? CStringGetTextDatum(edata->message) : (Datum) 0},
					failed ? "   " : "  n", SPI_OK_UPDATE);
	job_xact_end();
	if (failed)
	{
		SetUserIdAndSecContext(table_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		job_drop_invalid_index(nsp, index_name, cxt);
		SetUserIdAndSecContext(save_user, save_sec);
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("building index \"%s\" of migration \"%s\" failed: %s", index_name, j->name, edata->message),
				 errdetail("An INVALID index a failed CREATE INDEX CONCURRENTLY left was dropped; a valid one that could not be attached is kept."),
				 errhint("Fix the cause, then SELECT customer_unify.resume(%s);", quote_literal_cstr(j->name))));
	}
	pfree(sql);
	pfree(index_name);
	return true;
}

/* Wait until the launching transaction committed our generation; false if it never will. */
static bool
job_wait_for_launcher(MemoryContext cxt)
{
	for (;;)
	{
		bool		launcher_running = TransactionIdIsInProgress(job_args.launcher_xid);
		JobRow		j;

		job_read_own(&j, cxt);
		if (j.found && j.generation == job_args.generation)
			return true;
		if (!launcher_running || (j.found && j.generation > job_args.generation))
			return false;
		cu_sleep_ms(20);
	}
}

void
cu_job_main(Datum main_arg)
{
	MemoryContext cxt;
	MemoryContext stmtcxt;
	LOCKTAG		tag;
	JobRow		j;

	memcpy(&job_args, MyBgworkerEntry->bgw_extra, sizeof(job_args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(job_args.database, job_args.role, 0);
	pgstat_report_appname(MyBgworkerEntry->bgw_name);
	cxt = AllocSetContextCreate(TopMemoryContext, "customer_unify job", ALLOCSET_DEFAULT_SIZES);
	stmtcxt = AllocSetContextCreate(TopMemoryContext, "customer_unify job statement", ALLOCSET_DEFAULT_SIZES);

	/* alive from now on, for as long as this process lives */
	job_locktag(&tag, job_args.migration_id);
	StartTransactionCommand();
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
	CommitTransactionCommand();

	if (!job_wait_for_launcher(cxt))
		proc_exit(0);			/* the launch rolled back, or a newer job took over */

	job_xact_begin();
	job_set(job_args.migration_id, "state = 'running', pid = $2, started_at = COALESCE(j.started_at, pg_catalog.clock_timestamp())",
			1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(MyProcPid)}, NULL);
	job_xact_end();

	PG_TRY();
	{
		for (;;)
		{
			MemoryContextReset(cxt);
			job_read_own(&j, cxt);
			if (!j.found || j.generation != job_args.generation)
				break;			/* a newer job took over */
			if (job_streq(j.request, "cancel"))
			{
				job_set_text_own("state = 'cancelled', request = NULL, phase = NULL, pid = NULL, "
								 "finished_at = pg_catalog.clock_timestamp(), last_error = $2", NULL);
				break;
			}
			if (job_streq(j.request, "pause"))
			{
				job_set_text_own("state = 'paused', request = NULL, phase = NULL, pid = NULL, last_error = $2", NULL);
				break;
			}
			if (job_state_index(j.migration_state) >= job_state_index("backfilled") &&
				job_build_next_index(&j, stmtcxt))
				continue;
			if (job_state_index(j.migration_state) >= job_state_index(j.until))
			{
				job_set_text_own("state = 'finished', phase = NULL, pid = NULL, finished_at = pg_catalog.clock_timestamp(), "
								 "last_error = $2", NULL);
				break;
			}
			/* a phase that writes (start, the backfill) waits for the throttles first */
			if (job_state_index(j.migration_state) <= job_state_index("started") && !job_hold_before_phase(stmtcxt))
				continue;
			job_run_phase(&j, stmtcxt);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		cu_batch_hook = NULL;
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		PortalErrorCleanup();
		debug_query_string = NULL;
		pgstat_report_activity(STATE_IDLE, NULL);
		job_xact_begin();
		/* a statement the DBA's pause or cancel interrupted (an index build that waited) ends as asked */
		job_set(job_args.migration_id,
				"state = CASE WHEN $3 OPERATOR(pg_catalog.=) '57014' AND j.request OPERATOR(pg_catalog.=) 'pause' THEN 'paused' "
				"             WHEN $3 OPERATOR(pg_catalog.=) '57014' AND j.request OPERATOR(pg_catalog.=) 'cancel' THEN 'cancelled' "
				"             ELSE 'failed' END, "
				"finished_at = CASE WHEN $3 OPERATOR(pg_catalog.=) '57014' AND j.request OPERATOR(pg_catalog.=) 'pause' THEN NULL "
				"                   ELSE pg_catalog.clock_timestamp() END, "
				"request = NULL, pid = NULL, last_error = $2, last_sqlstate = $3", 2,
				(Oid[]) {TEXTOID, TEXTOID},
				(Datum[]) {CStringGetTextDatum(edata->message ? edata->message : "(no message)"),
			CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode))}, NULL);
		job_xact_end();
		proc_exit(1);
	}
	PG_END_TRY();
	proc_exit(0);
}

/* ------------------------------------------------ resuming after a restart */

/* The scanner's work for one job: resume it if its worker is gone. */
static void
job_scanner_resume(void *arg)
{
	int64		id = *(int64 *) arg;
	JobRow		j;

	job_read(id, true, &j);
	if (j.found && (strcmp(j.state, "running") == 0 || strcmp(j.state, "starting") == 0) &&
		job_state_index(j.migration_state) >= 0 && !job_worker_alive(id))
	{
		ereport(LOG,
				(errmsg("customer_unify: resuming the interrupted job of migration \"%s\"", j.name)));
		job_start(id, &j, true);
	}
}

/*
 * The scanner of one database (connected as the bootstrap superuser, which
 * only reads the job catalog here): resume every job whose row says it runs
 * but whose worker is gone.  Each job's own worker connects as the
 * migration's owner, as resume() would start it.
 */
void
cu_job_scanner_main(Datum main_arg)
{
	List	   *ids = NIL;
	ListCell   *lc;
	uint64		i;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), BOOTSTRAP_SUPERUSERID, 0);
	job_xact_begin();
	/* a database without the extension (or with a version before 1.3) has no jobs */
	if (SPI_execute("SELECT 1 WHERE pg_catalog.to_regclass('customer_unify.job') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1 &&
		SPI_execute("SELECT j.migration_id FROM customer_unify.job j "
					"WHERE j.state OPERATOR(pg_catalog.=) ANY (ARRAY['starting', 'running']) ORDER BY 1",
					true, 0) == SPI_OK_SELECT)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		for (i = 0; i < SPI_processed; i++)
			ids = lappend(ids, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	job_xact_end();
	foreach(lc, ids)
	{
		int64		id = pg_strtoint64((char *) lfirst(lc));
		ErrorData  *edata;

		/* one job that cannot be resumed (its owner dropped, ...) keeps no other from it */
		job_xact_begin();
		edata = cu_subxact(job_scanner_resume, &id);
		if (edata != NULL)
		{
			ereport(WARNING,
					(errmsg("customer_unify: could not resume the interrupted job of migration %lld: %s",
							(long long) id, edata->message),
					 errhint("Resume it by hand: SELECT customer_unify.resume(...);")));
			FreeErrorData(edata);
		}
		job_xact_end();
	}
	proc_exit(0);
}

static bool
job_start_helper(const char *function, const char *name, Datum arg, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "customer_unify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	worker.bgw_main_arg = arg;
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/* The static launcher: a scanner per database, one after another, then idle. */
void
cu_job_launcher_main(Datum main_arg)
{
	List	   *dbs = NIL;
	ListCell   *lc;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!d->datallowconn || d->datistemplate)
			continue;
		old = MemoryContextSwitchTo(TopMemoryContext);
		dbs = lappend_oid(dbs, d->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, dbs)
	{
		BackgroundWorkerHandle *handle;

		if (!job_start_helper("cu_job_scanner_main", "customer_unify job scanner",
							  ObjectIdGetDatum(lfirst_oid(lc)), &handle))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("customer_unify: no background worker slot to resume interrupted jobs"),
					 errhint("Raise max_worker_processes, or call customer_unify.resume(...) for each.")));
			break;
		}
		(void) WaitForBackgroundWorkerShutdown(handle);
		CHECK_FOR_INTERRUPTS();
	}
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* _PG_init: the static launcher, when loaded by shared_preload_libraries */
void
cu_jobs_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "customer_unify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cu_job_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "customer_unify job launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "customer_unify job launcher");
	RegisterBackgroundWorker(&worker);
}
