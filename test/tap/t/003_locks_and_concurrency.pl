# 003_locks_and_concurrency.pl - customer_unify's phases hold no lock while
# they wait, give up cleanly, and refuse to run twice at once.
#
# Real concurrent sessions (background psql), one fresh database per
# scenario (a users table of 20,000 rows split into users + profiles):
#
#  a) nothing held while waiting: session B keeps a lock on profiles that the
#     phase needs (ACCESS SHARE for finalize and rollback, SHARE UPDATE
#     EXCLUSIVE for the end of the backfill) inside an open transaction;
#     session A runs the phase with customer_unify.lock_timeout_ms = 200 and
#     customer_unify.lock_retries = 15, so it keeps retrying; meanwhile
#     session C reads and updates users with lock_timeout 2s, and every one
#     of its statements must succeed (a phase that kept its lock on users
#     while it waited for profiles would make them time out). A watcher
#     session checks that A was really seen holding users while it waited
#     (so C's statements did meet A's attempts). A second call of the same
#     phase meanwhile fails at once with 55006. Then B commits and A's phase
#     succeeds.
#  b) when the lock never comes free the phase fails with 55P03 after the
#     configured retries, and the migration's state, the schema and the data
#     are unchanged (start, end of backfill, finalize, rollback); once the
#     lock is free the phase runs.
#  c) two sessions start the same planned migration: the one held inside
#     BEGIN keeps the migration's row, the other gets 55006 at once (for
#     start and for rollback); after a ROLLBACK of the first nothing is left,
#     after a COMMIT the migration is started exactly once.
#  d) two concurrent CALL backfill of one migration: the second fails with
#     55006 while the first runs; the first completes, rows_done equals the
#     number of source rows and verify passes.
#  e) a backfill that is cancelled or terminated releases its interlock: a
#     CALL backfill from another session right after resumes and completes.
#
# The assertions are about behaviour (which statement succeeds or fails with
# which SQLSTATE, what state and data are left), never about how long the
# extension takes; the 2s lock_timeout of session C is the bound a phase
# must not make an application wait.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $NROWS = 20_000;
my $MOVED = 'first_name, last_name, phone';

my $node = PostgreSQL::Test::Cluster->new('locks');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
max_connections = 40
log_line_prefix = '%m [%p] %q%d '
log_lock_waits = on
deadlock_timeout = '1s'
});
$node->start;

# The tables every scenario starts from (the migration itself is planned per database).
$node->safe_psql('postgres', 'CREATE DATABASE cu_template');
$node->safe_psql(
	'cu_template', qq{
	CREATE EXTENSION customer_unify;
	CREATE TABLE users (
	    id         bigint PRIMARY KEY,
	    email      text NOT NULL,
	    first_name text,
	    last_name  text NOT NULL DEFAULT '',
	    phone      text,
	    created_at timestamptz NOT NULL DEFAULT '2020-01-01'
	);
	INSERT INTO users
	SELECT g, 'user' || g || '\@example.com',
	       CASE WHEN g % 17 = 0 THEN NULL ELSE 'First' || g END,
	       'Last' || (g % 100),
	       CASE WHEN g % 5 = 0 THEN NULL ELSE '+1555' || lpad(g::text, 7, '0') END,
	       timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute'
	  FROM generate_series(1, $NROWS) g;
	VACUUM ANALYZE users;
});

# ------------------------------------------------------------------ helpers

sub q1
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

sub state_of
{
	my ($db) = @_;
	return q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'});
}

# Run SQL in a new connection with verbose errors: (rc, stdout, stderr).
sub psql_v
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	return ($rc, $out, $err);
}

sub sqlstate_of
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : 'none';
}

# A fresh database with migration 'm' (users -> profiles) advanced to $upto:
# planned, started, backfilled or cut_over.
sub fresh_db
{
	my ($db, $upto) = @_;
	q1('postgres', "CREATE DATABASE $db TEMPLATE cu_template");
	q1(
		$db, q{
		SELECT customer_unify.split(name => 'm', source => 'public.users'::regclass,
		    target => 'profiles', columns => ARRAY['first_name', 'last_name', 'phone'],
		    link_column => 'user_id')});
	my @steps = (
		[ started    => q{SELECT customer_unify.start('m')} ],
		[ backfilled => q{CALL customer_unify.backfill('m', batch_size => 5000)} ],
		[ verified   => q{SELECT count(*) FROM customer_unify.verify('m')} ],
		[ cut_over   => q{SELECT customer_unify.cutover('m')} ]);
	for my $s (@steps)
	{
		last if $upto eq 'planned';
		q1($db, $s->[1]);
		is(state_of($db), $s->[0], "$db: migration is $s->[0]");
		last if $upto eq $s->[0];
	}
	return;
}

# A background session (errors do not end it, they are reported on stderr).
sub session
{
	my ($db) = @_;
	my $s = $node->background_psql($db, on_error_stop => 0);
	$s->set_query_timer_restart;
	run_safe($s, '\set VERBOSITY verbose');
	$s->{cu_pid} = run_safe($s, 'SELECT pg_backend_pid()');
	return $s;
}

sub end_session
{
	my ($s) = @_;
	eval { $s->quit; 1 } or eval { $s->{run}->kill_kill; 1 };
	return;
}

# Send SQL to a session without waiting for it; collect() waits for the end.
sub send_async
{
	my ($s, $sql, $tag) = @_;
	$s->{stdout} = '';
	$s->{stderr} = '';
	$s->{stdin} .= "$sql\n;\n\\echo '$tag:done'\n\\warn '$tag:done'\n";
	$s->{timeout}->start;
	$s->{run}->pump_nb;
	return;
}

# Wait for SQL sent with send_async to finish: (stdout, stderr).
sub collect
{
	my ($s, $tag) = @_;
	my $re = qr/\Q$tag\E:done\r?\n/;
	$s->{timeout}->start;
	$s->{run}->pump
	  until ($s->{stdout} =~ $re && $s->{stderr} =~ $re)
	  || $s->{timeout}->is_expired;
	die "timed out waiting for $tag" if $s->{timeout}->is_expired;
	(my $out = $s->{stdout}) =~ s/$re//;
	(my $err = $s->{stderr}) =~ s/$re//;
	$out =~ s/\s+\z//;
	$s->{stdout} = '';
	$s->{stderr} = '';
	return ($out, $err);
}

# Run SQL in a session and wait: (stdout, stderr).
sub run_in
{
	my ($s, $sql) = @_;
	my $tag = 'q' . ++$s->{cu_queries};
	send_async($s, $sql, $tag);
	return collect($s, $tag);
}

# The same, dying on an error.
sub run_safe
{
	my ($s, $sql) = @_;
	my ($out, $err) = run_in($s, $sql);
	die "query failed: $sql\n$err" if $err ne '';
	return $out;
}

# Does backend $pid wait for a lock on relation $rel?
sub waits_for_lock_sql
{
	my ($pid, $rel) = @_;
	return qq{SELECT EXISTS (SELECT 1 FROM pg_locks
	    WHERE pid = $pid AND NOT granted AND locktype = 'relation' AND relation = '$rel'::regclass)};
}

sub still_running
{
	my ($db, $pid) = @_;
	return q1($db, "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND state = 'active'") eq '1';
}

# A DO block for a watcher session: $n looks, 20 ms apart, at the locks of
# backend $pid; reports in a NOTICE how often it held a lock on users that
# blocks writers (what a phase takes first) while it waited for one on
# profiles.  Each look is a statement of its own (a fresh pg_locks).
sub watch_phase_sql
{
	my ($pid, $n) = @_;
	return qq{DO \$\$
DECLARE
    hits int := 0;
BEGIN
    FOR i IN 1 .. $n LOOP
        IF EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $pid AND l.granted
                      AND l.locktype = 'relation' AND l.relation = 'users'::regclass
                      AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))
           AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $pid AND NOT l.granted
                      AND l.locktype = 'relation' AND l.relation = 'profiles'::regclass) THEN
            hits := hits + 1;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
    RAISE NOTICE 'holding_hits=%', hits;
END
\$\$};
}

# Session C: $n rounds of a read and an update of users, each under
# lock_timeout 2s; every statement must succeed.  Meanwhile a watcher looks
# at the locks of the phase's backend $apid: it must have been seen holding
# users while it waited for profiles (else the scenario proved nothing).
# Returns the last email set.
sub application_round
{
	my ($db, $c, $label, $n, $uid, $apid) = @_;
	my ($reads, $writes) = (0, 0);
	my @errors;
	my $email;
	my $w = session($db);
	my $looks = 150;
	send_async($w, watch_phase_sql($apid, $looks), 'watch');
	for my $i (1 .. $n)
	{
		my ($out, $err) = run_in($c, "SET lock_timeout = '2s'; SELECT count(*) FROM users");
		if ($err eq '' && $out eq $NROWS) { $reads++ }
		else { push @errors, "read $i: out=$out err=$err" }
		$email = "c$i-$label\@example.org";
		($out, $err) = run_in($c,
			"SET lock_timeout = '2s'; UPDATE users SET email = '$email' WHERE id = $uid RETURNING id");
		if ($err eq '' && $out eq $uid) { $writes++ }
		else { push @errors, "update $i: out=$out err=$err" }
		usleep(150_000);
	}
	is($reads, $n, "$db: $label: all $n reads of users by session C succeed (lock_timeout 2s)")
	  or diag(join("\n", @errors));
	is($writes, $n, "$db: $label: all $n updates of users by session C succeed (lock_timeout 2s)")
	  or diag(join("\n", @errors));
	my ($wout, $werr) = collect($w, 'watch');
	end_session($w);
	my $seen = $werr =~ /holding_hits=(\d+)/ ? $1 : 0;
	ok($seen > 0,
		"$db: $label: meanwhile the phase was seen holding users while it waited for profiles ($seen of $looks looks)")
	  or diag($werr);
	return $email;
}

sub table_sum
{
	my ($db, $table, $key) = @_;
	return q1($db,
		"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.$key), '')) FROM $table t");
}

sub schema_dump
{
	my ($db) = @_;
	my ($out, $err);
	my @cmd = (
		'pg_dump', '--schema-only', '--exclude-schema=customer_unify',
		'-d', $node->connstr($db));
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	ok($ok, "$db: pg_dump --schema-only") or diag($err);
	# pg_dump >= 15.14 brackets the script with a random \restrict key
	$out =~ s/^\\(?:un)?restrict \S+\n//mg;
	return $out;
}

# Everything a failed phase must leave as it was.
sub snapshot
{
	my ($db) = @_;
	return {
		state    => state_of($db),
		dump     => schema_dump($db),
		users    => table_sum($db, 'users', 'id'),
		profiles => q1($db, q{SELECT to_regclass('public.profiles') IS NOT NULL}) eq 't'
		? table_sum($db, 'profiles', 'user_id') : 'none',
		log => q1(
			$db, q{SELECT count(*) || ':' || coalesce(string_agg(l.phase || '/' || l.seq || '/' || l.outcome, ',' ORDER BY l.id), '')
			  FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
			 WHERE m.name = 'm'}),
		backfill => q1(
			$db, q{SELECT coalesce(string_agg(b.stream || '/' || b.rows_done || '/' || coalesce(b.last_key, '') || '/'
			                                  || (b.finished_at IS NOT NULL), ','), 'none')
			  FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id
			 WHERE m.name = 'm'}),
		catalog => q1(
			$db, q{SELECT (SELECT count(*) FROM customer_unify.step)
			  || ' ' || (SELECT coalesce(string_agg(r.tag || '=' || r.relid::oid || '/' || r.live, ',' ORDER BY r.tag), '')
			               FROM customer_unify.migration_relation r)
			  || ' ' || (SELECT coalesce(string_agg(x.name || '=' || x.mode, ',' ORDER BY x.name), '')
			               FROM customer_unify.sync_map x)}),
	};
}

sub same_snapshot
{
	my ($db, $before, $what) = @_;
	my $after = snapshot($db);
	is($after->{state}, $before->{state}, "$db: $what: state still $before->{state}");
	ok($after->{dump} eq $before->{dump}, "$db: $what: schema unchanged (pg_dump --schema-only)")
	  or diag("before:\n$before->{dump}\nafter:\n$after->{dump}");
	is($after->{users},    $before->{users},    "$db: $what: users unchanged");
	is($after->{profiles}, $before->{profiles}, "$db: $what: profiles unchanged");
	is($after->{log},      $before->{log},      "$db: $what: step log unchanged");
	is($after->{backfill}, $before->{backfill}, "$db: $what: backfill state unchanged");
	is($after->{catalog},  $before->{catalog},  "$db: $what: frozen plan, relations and sync maps unchanged");
	return;
}

sub fk_state
{
	my ($db) = @_;
	return q1(
		$db, q{
		SELECT coalesce(string_agg(conname || ':' || convalidated, ','), 'none')
		  FROM pg_constraint WHERE conrelid = to_regclass('public.profiles') AND contype = 'f'});
}

sub verify_all_ok
{
	my ($db, $what) = @_;
	my $v = q1($db, q{SELECT count(*) || '/' || count(*) FILTER (WHERE ok) FROM customer_unify.verify('m')});
	my ($n, $nok) = split m{/}, $v;
	ok($n > 0 && $n == $nok, "$db: $what: verify() all ok ($nok of $n)")
	  or diag(q1($db, q{SELECT * FROM customer_unify.verify('m') WHERE ok IS NOT TRUE}));
	return;
}

sub drop_db
{
	my ($db) = @_;
	q1('postgres', "DROP DATABASE $db WITH (FORCE)");
	return;
}

# ================================================== a) nothing held while waiting

# B holds $lock on profiles; A runs $phase_sql, retrying; C works on users.
# Returns the last email C wrote.
sub phase_waits_politely
{
	my (%arg) = @_;
	my ($db, $what, $lock, $phase_sql, $second_sql, $second_re) =
	  @arg{qw(db what lock phase_sql second_sql second_re)};
	my $uid = 4242;

	my $sess_b = session($db);
	my $sess_a = session($db);
	my $sess_c = session($db);
	run_safe($sess_b, "BEGIN; LOCK TABLE profiles IN $lock MODE;");
	run_safe($sess_a, 'SET customer_unify.lock_timeout_ms = 200');
	run_safe($sess_a, 'SET customer_unify.lock_retries = 15');
	send_async($sess_a, $phase_sql, 'phase');

	ok($node->poll_query_until($db, waits_for_lock_sql($sess_a->{cu_pid}, 'profiles')),
		"$db: $what: session A waits for its lock on profiles (held by B)");
	$arg{while_waiting}->() if $arg{while_waiting};

	my $email = application_round($db, $sess_c, $what, 12, $uid, $sess_a->{cu_pid});

	# meanwhile the same phase from another session is refused at once
	if ($second_sql)
	{
		my ($rc, $out, $err) = psql_v($db, "SET statement_timeout = '30s';\n$second_sql");
		is(sqlstate_of($err), '55006', "$db: $what: a second concurrent call fails with 55006")
		  or diag($err);
		like($err, $second_re, "$db: $what: ... and says why");
	}
	ok(still_running($db, $sess_a->{cu_pid}),
		"$db: $what: session A is still retrying after session C's statements");

	run_safe($sess_b, 'COMMIT');
	my ($out, $err) = collect($sess_a, 'phase');
	unlike($err, qr/ERROR/, "$db: $what: session A's phase succeeds once B commits") or diag($err);
	end_session($_) for ($sess_a, $sess_b, $sess_c);
	return ($out, $email);
}

note '==================== a) finalize waits without holding users ====================';
{
	my $db = 'cu_a_finalize';
	fresh_db($db, 'cut_over');
	my ($out, $email) = phase_waits_politely(
		db         => $db,
		what       => 'finalize',
		lock       => 'ACCESS SHARE',
		phase_sql  => q{SELECT customer_unify.finalize('m')},
		second_sql => q{SELECT customer_unify.finalize('m')},
		second_re  => qr/migration (?:\d+|"m") is busy/);
	is($out, 'finalized', "$db: finalize returns 'finalized'");
	is(state_of($db), 'finalized', "$db: state finalized");
	is( q1(
			$db, q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.users'::regclass
			        AND attname IN ('first_name', 'last_name', 'phone') AND NOT attisdropped}),
		'0', "$db: the moved columns are gone from users");
	is(q1($db, 'SELECT count(*) FROM profiles'), $NROWS, "$db: profiles has every row");
	is(q1($db, 'SELECT email FROM m_compat.users WHERE id = 4242'),
		$email, "$db: session C's last update is visible through the compat view");
	drop_db($db);
}

note '==================== a) rollback waits without holding users ====================';
{
	my $db = 'cu_a_rollback';
	fresh_db($db, 'cut_over');
	my $sum_before = q1($db, "SELECT md5(string_agg(($MOVED)::text, ',' ORDER BY id)) FROM users");
	my ($out, $email) = phase_waits_politely(
		db         => $db,
		what       => 'rollback',
		lock       => 'ACCESS SHARE',
		phase_sql  => q{SELECT customer_unify.rollback('m')},
		second_sql => q{SELECT customer_unify.rollback('m')},
		second_re  => qr/migration (?:\d+|"m") is busy/);
	is($out, 'rolled_back', "$db: rollback returns 'rolled_back'");
	is(state_of($db), 'rolled_back', "$db: state rolled_back");
	is(q1($db, q{SELECT to_regclass('public.profiles') IS NULL AND to_regnamespace('m_compat') IS NULL}),
		't', "$db: profiles and the compat schema are gone");
	is(q1($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass}),
		'0', "$db: no trigger left on users");
	is(q1($db, 'SELECT count(*) FROM users'), $NROWS, "$db: users has every row");
	is(q1($db, "SELECT md5(string_agg(($MOVED)::text, ',' ORDER BY id)) FROM users"),
		$sum_before, "$db: the moved columns of users are intact");
	is(q1($db, 'SELECT email FROM users WHERE id = 4242'), $email, "$db: session C's last update is kept");
	drop_db($db);
}

note '==================== a) the end of the backfill waits without holding users ====================';
{
	my $db = 'cu_a_backfill_end';
	fresh_db($db, 'started');
	my ($out, $email) = phase_waits_politely(
		db            => $db,
		what          => 'end of backfill',
		lock          => 'SHARE UPDATE EXCLUSIVE',
		phase_sql     => q{CALL customer_unify.backfill('m', batch_size => 5000)},
		second_sql    => q{CALL customer_unify.backfill('m', batch_size => 5000)},
		second_re     => qr/being backfilled by another session/,
		while_waiting => sub {
			# every row is copied; only the end phase (the link FK) waits
			is( q1(
					$db, q{SELECT m.state || '/' || b.rows_done || '/' || (b.finished_at IS NOT NULL)
					  FROM customer_unify.migration m JOIN customer_unify.backfill_state b ON b.migration_id = m.id
					 WHERE m.name = 'm' AND b.stream = 'main'}),
				"started/$NROWS/true",
				"$db: the copy stream is complete, the migration still started, while the end phase waits");
			is(fk_state($db), 'none', "$db: no link FK yet while the end phase waits");
		});
	is(state_of($db), 'backfilled', "$db: state backfilled after the end phase");
	is(fk_state($db), 'profiles_user_id_fkey:true', "$db: link FK present and validated");
	is( q1(
			$db, q{SELECT b.rows_done FROM customer_unify.backfill_state b
			  JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'm'}),
		$NROWS, "$db: rows_done equals the number of source rows");
	verify_all_ok($db, 'after the end phase');
	is(q1($db, 'SELECT email FROM users WHERE id = 4242'), $email, "$db: session C's last update is kept");
	drop_db($db);
}

# ================================================== b) locks never come free

sub phase_gives_up
{
	my ($db, $what, $sql, $phase) = @_;
	my ($rc, $out, $err) = psql_v(
		$db, qq{SET customer_unify.lock_timeout_ms = 100;
SET customer_unify.lock_retries = 2;
$sql});
	isnt($rc, 0, "$db: $what fails while the lock is held");
	is(sqlstate_of($err), '55P03', "$db: $what fails with SQLSTATE 55P03") or diag($err);
	like($err, qr/could not run phase "?$phase"? of migration "m".*\b(3 attempts|2 retries)\b/,
		"$db: $what gave up after the configured 2 retries (3 attempts)")
	  or diag($err);
	return;
}

note '==================== b) start gives up ====================';
{
	my $db = 'cu_b_start';
	fresh_db($db, 'planned');
	my $holder = session($db);
	# an application transaction that wrote to users and stays open
	run_safe($holder, 'BEGIN; UPDATE users SET email = email WHERE id = 1;');
	my $before = snapshot($db);
	phase_gives_up($db, 'start', q{SELECT customer_unify.start('m')}, 'start');
	same_snapshot($db, $before, 'failed start');
	is(q1($db, q{SELECT to_regclass('public.profiles') IS NULL}), 't', "$db: no profiles table");
	is(q1($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass}),
		'0', "$db: no trigger on users");
	is( q1(
			$db, q{SELECT (SELECT count(*) FROM customer_unify.step) + (SELECT count(*) FROM customer_unify.backfill_state)}),
		'0', "$db: nothing frozen (no steps, no backfill state)");
	run_safe($holder, 'COMMIT');
	end_session($holder);
	is(q1($db, q{SELECT customer_unify.start('m')}), 'started', "$db: start runs once the lock is free");
	drop_db($db);
}

note '==================== b) the end of the backfill gives up ====================';
{
	my $db = 'cu_b_backfill_end';
	fresh_db($db, 'started');
	my $holder = session($db);
	run_safe($holder, 'BEGIN; LOCK TABLE profiles IN SHARE UPDATE EXCLUSIVE MODE;');
	phase_gives_up($db, 'CALL backfill (its end phase)',
		q{CALL customer_unify.backfill('m', batch_size => 5000)}, 'backfill_end');
	is(state_of($db), 'started', "$db: state still started");
	is(fk_state($db), 'none', "$db: no link FK");
	is( q1(
			$db, q{SELECT count(*) FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
			 WHERE m.name = 'm' AND l.phase <> 'start'}),
		'0', "$db: no step of the end phase logged");
	is( q1(
			$db, q{SELECT b.rows_done || '/' || (b.finished_at IS NOT NULL) FROM customer_unify.backfill_state b
			  JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'm'}),
		"$NROWS/true", "$db: the copy itself is complete and checkpointed");
	run_safe($holder, 'COMMIT');
	end_session($holder);
	my ($rc, $out, $err) = psql_v($db, q{CALL customer_unify.backfill('m', batch_size => 5000)});
	is($rc, 0, "$db: CALL backfill again completes once the lock is free") or diag($err);
	is(state_of($db), 'backfilled', "$db: state backfilled");
	is(fk_state($db), 'profiles_user_id_fkey:true', "$db: link FK present and validated");
	is( q1(
			$db, q{SELECT b.rows_done FROM customer_unify.backfill_state b
			  JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'm'}),
		$NROWS, "$db: rows_done still equals the number of source rows");
	is(q1($db, 'SELECT count(*) FROM profiles'), $NROWS, "$db: profiles has every row");
	drop_db($db);
}

note '==================== b) finalize and rollback give up ====================';
{
	my $db = 'cu_b_cut_over';
	fresh_db($db, 'cut_over');
	my $holder = session($db);
	run_safe($holder, 'BEGIN; LOCK TABLE profiles IN ACCESS SHARE MODE;');
	my $before = snapshot($db);
	phase_gives_up($db, 'rollback', q{SELECT customer_unify.rollback('m')}, 'rollback');
	same_snapshot($db, $before, 'failed rollback');
	phase_gives_up($db, 'finalize', q{SELECT customer_unify.finalize('m')}, 'finalize');
	same_snapshot($db, $before, 'failed finalize');
	run_safe($holder, 'COMMIT');
	end_session($holder);
	my $moved = q1($db, "SELECT md5(string_agg(($MOVED)::text, ',' ORDER BY id)) FROM users");
	is(q1($db, q{SELECT customer_unify.finalize('m')}), 'finalized', "$db: finalize runs once the lock is free");
	is(q1($db, "SELECT md5(string_agg(($MOVED)::text, ',' ORDER BY user_id)) FROM profiles"),
		$moved, "$db: profiles holds the moved columns of every user after finalize");
	drop_db($db);
}

# ================================================== c) two starts at once

note '==================== c) two sessions start the same migration ====================';
{
	my $db = 'cu_c_start';
	fresh_db($db, 'planned');
	my $s1 = session($db);

	# first round: the holder rolls back
	my ($out, $err) = run_in($s1, q{BEGIN; SELECT customer_unify.start('m');});
	is($out, 'started', "$db: session 1 starts inside BEGIN");
	is($err, '', "$db: ... without error");
	my ($rc, $o2, $e2) = psql_v($db, "SET statement_timeout = '30s';\nSELECT customer_unify.start('m')");
	is(sqlstate_of($e2), '55006', "$db: session 2's start fails with 55006 at once") or diag($e2);
	like($e2, qr/migration (?:\d+|"m") is busy/, "$db: ... saying the migration is busy");
	($rc, $o2, $e2) = psql_v($db, "SET statement_timeout = '30s';\nSELECT customer_unify.rollback('m')");
	is(sqlstate_of($e2), '55006', "$db: session 2's rollback fails with 55006 at once too") or diag($e2);
	($out, $err) = run_in($s1, 'ROLLBACK');
	is(state_of($db), 'planned', "$db: after session 1's ROLLBACK the migration is planned");
	is( q1(
			$db, q{SELECT (to_regclass('public.profiles') IS NULL)::text || '/'
			  || (SELECT count(*) FROM customer_unify.step) || '/' || (SELECT count(*) FROM customer_unify.step_log)
			  || '/' || (SELECT count(*) FROM customer_unify.backfill_state)
			  || '/' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass)}),
		'true/0/0/0/0', "$db: ... and nothing of the start is left");

	# second round: the holder commits
	($out, $err) = run_in($s1, q{BEGIN; SELECT customer_unify.start('m');});
	is($out, 'started', "$db: session 1 starts inside BEGIN again");
	($rc, $o2, $e2) = psql_v($db, "SET statement_timeout = '30s';\nSELECT customer_unify.start('m')");
	is(sqlstate_of($e2), '55006', "$db: session 2's start fails with 55006 at once again") or diag($e2);
	is(state_of($db), 'planned', "$db: other sessions still see planned");
	($out, $err) = run_in($s1, 'COMMIT');
	is($err, '', "$db: session 1 commits");
	end_session($s1);
	is(state_of($db), 'started', "$db: state started");
	like( q1(
			$db, q{SELECT count(*) || '/' || count(DISTINCT l.seq) || '/' || max(l.seq) || '/' || bool_and(l.attempts = 1)
			              || '/' || (SELECT count(*) FROM customer_unify.step s WHERE s.migration_id = m.id AND s.phase = 'start')
			  FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
			 WHERE m.name = 'm' AND l.phase = 'start' GROUP BY m.id}),
		qr/^(\d+)\/\1\/\1\/true\/\1$/, "$db: step_log has exactly one start run (each step once, first attempt)");
	is( q1(
			$db, q{SELECT (SELECT count(*) FROM customer_unify.step_log WHERE phase <> 'start')
			  || '/' || (SELECT string_agg(stream, ',') FROM customer_unify.backfill_state)
			  || '/' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass)
			  || '/' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.profiles'::regclass)}),
		'0/main/4/2', "$db: one backfill stream, the sync triggers once, no other phase logged");
	($rc, $o2, $e2) = psql_v($db, q{SELECT customer_unify.start('m')});
	is(sqlstate_of($e2), '55000', "$db: a start after the committed one fails with 55000") or diag($e2);
	drop_db($db);
}

# ================================================== d) two backfills at once

note '==================== d) two concurrent backfills ====================';
{
	my $db = 'cu_d_backfill';
	fresh_db($db, 'started');
	my $s1 = session($db);
	send_async($s1, q{CALL customer_unify.backfill('m', batch_size => 500, sleep_ms => 50)}, 'bf1');
	ok( $node->poll_query_until(
			$db, q{SELECT rows_done > 0 FROM customer_unify.backfill_state}),
		"$db: the first backfill is copying");
	for my $try (1 .. 2)
	{
		my ($rc, $out, $err) = psql_v($db, q{CALL customer_unify.backfill('m', batch_size => 500)});
		is(sqlstate_of($err), '55006', "$db: a second CALL backfill fails with 55006 (try $try)") or diag($err);
		like($err, qr/being backfilled by another session/, "$db: ... being backfilled by another session");
	}
	ok(still_running($db, $s1->{cu_pid}), "$db: the first backfill was still running meanwhile");
	is( q1($db, q{SELECT finished_at IS NULL AND rows_done < } . $NROWS . q{ FROM customer_unify.backfill_state}),
		't', "$db: ... and not finished");
	my ($out, $err) = collect($s1, 'bf1');
	unlike($err, qr/ERROR/, "$db: the first backfill completes without error") or diag($err);
	end_session($s1);
	is(state_of($db), 'backfilled', "$db: state backfilled");
	is( q1($db, q{SELECT rows_done || '/' || batches FROM customer_unify.backfill_state}),
		$NROWS . '/' . ($NROWS / 500), "$db: rows_done equals the source rows, batches as many as needed (no double counting)");
	is(q1($db, 'SELECT count(*) FROM profiles'), $NROWS, "$db: profiles has every row");
	verify_all_ok($db, 'after the backfill');
	is(state_of($db), 'verified', "$db: state verified");
	drop_db($db);
}

# ================================================== e) interrupted backfills release the interlock

note '==================== e) cancelled and terminated backfills ====================';
{
	my $db = 'cu_e_interrupted';
	fresh_db($db, 'started');
	my $last = 0;
	for my $how ('cancel', 'terminate')
	{
		my $s = session($db);
		send_async($s, q{CALL customer_unify.backfill('m', batch_size => 500, sleep_ms => 100)}, "bf_$how");
		ok( $node->poll_query_until(
				$db, qq{SELECT rows_done >= $last + 2000 FROM customer_unify.backfill_state}),
			"$db: $how: the backfill is copying");
		my $fn = $how eq 'cancel' ? 'pg_cancel_backend' : 'pg_terminate_backend';
		is(q1($db, "SELECT $fn($s->{cu_pid})"), 't', "$db: $how: $fn($s->{cu_pid})");
		if ($how eq 'cancel')
		{
			my ($out, $err) = collect($s, "bf_$how");
			like($err, qr/57014/, "$db: $how: the backfill reports the cancel (57014)");
			my ($one, $e1) = run_in($s, 'SELECT 1');
			is($one, '1', "$db: $how: the session is usable after the cancel");
		}
		else
		{
			ok( $node->poll_query_until(
					$db, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $s->{cu_pid}"),
				"$db: $how: the backend is gone");
		}
		end_session($s);
		my $st = q1($db, q{SELECT m.state || '/' || (b.finished_at IS NULL) || '/' || b.rows_done
		  FROM customer_unify.migration m JOIN customer_unify.backfill_state b ON b.migration_id = m.id});
		my ($state, $unfinished, $done) = split m{/}, $st;
		ok($state eq 'started' && $unfinished eq 'true' && $done > $last && $done < $NROWS,
			"$db: $how: checkpoint kept, not finished ($st)");
		$last = $done;
		if ($how eq 'cancel')
		{
			# another session right after the cancel is not refused
			my ($rc, $out, $err) = psql_v($db, q{CALL customer_unify.backfill('m', batch_size => 500, max_batches => 2)});
			is($rc, 0, "$db: $how: a CALL backfill from another session right after runs") or diag($err);
			is( q1($db, q{SELECT rows_done FROM customer_unify.backfill_state}),
				$last + 1000, "$db: $how: ... and resumes at the checkpoint (2 batches more)");
			$last += 1000;
		}
	}
	# right after the termination: a new CALL resumes and completes
	my ($rc, $out, $err) = psql_v($db, q{CALL customer_unify.backfill('m', batch_size => 500)});
	is($rc, 0, "$db: terminate: a new CALL backfill right after is not refused and completes") or diag($err);
	unlike($err, qr/55006/, "$db: ... no 'being backfilled' error");
	is(state_of($db), 'backfilled', "$db: state backfilled");
	is( q1($db, q{SELECT rows_done || '/' || batches FROM customer_unify.backfill_state}),
		$NROWS . '/' . ($NROWS / 500), "$db: rows_done equals the source rows (resumed, nothing copied twice)");
	is(q1($db, 'SELECT count(*) FROM profiles'), $NROWS, "$db: profiles has every row");
	verify_all_ok($db, 'after the resumed backfill');
	drop_db($db);
}

# no server process crashed
{
	my $log = slurp_file($node->logfile);
	my @bad = grep { /terminated by signal|PANIC|TRAP:|terminated by exception/ } split /\n/, $log;
	is(scalar(@bad), 0, 'no server process crashed') or diag(join("\n", @bad));
}

$node->stop;
done_testing();
