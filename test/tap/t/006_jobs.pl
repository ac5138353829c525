# 006_jobs.pl - background jobs (customer_unify.launch and friends) survive
# their launcher, pauses, cancels, a killed worker and a crashed server.
#
# Each scenario gets a fresh database with a users table (NROWS rows, sparse
# ids) owned by a LOGIN role, a split migration users -> profiles planned by
# that role, and a job launched by it with small batches and a nice throttle
# (so that it is still copying when the scenario interrupts it).  Waiting is
# polling with a timeout (poll_query_until), never a fixed sleep asserted on.
#   detach     the launching session disconnects at once; the job finishes
#   pgbench    a pgbench load (2 clients: single-row UPDATEs of the moved
#              columns, INSERTs and DELETEs on users) runs, in runs of one
#              second one after another, from before the launch until the
#              job, throttled with nice and chunk_ms, has finished: every
#              run exits 0 with no failed transaction, the per-transaction
#              logs show commits throughout the job's run, the job recorded
#              its throttling (throttled_ms, throttle_reason) while running
#              and adapted its batch size
#   pause      pause -> nothing advances over a couple of seconds -> resume
#              -> finishes
#   cancel     cancel mid-backfill: the checkpoint is consistent (every row
#              at or below last_key copied), a later foreground CALL
#              backfill finishes and verify passes
#   kill9      SIGKILL of the worker (the postmaster restarts the server):
#              the job shows interrupted, resume() finishes it
#   immediate  pg_ctl stop -m immediate mid-job, start: resume() finishes it
#   lag        max_lag_bytes with a streaming standby whose replay is paused:
#              the job holds (throttle_reason says why) until replay resumes
#   autostart  with shared_preload_libraries = customer_unify, the same
#              without resume(): the static launcher resumes it at start
# Every scenario ends with verify() all ok, target rows == source rows, no
# duplicate link values, every moved value equal, and writes made while the
# job ran (or was interrupted) mirrored.  Last, with max_worker_processes = 0
# launch() fails with 53400 and a hint naming max_worker_processes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $NROWS = $ENV{CU_TAP_JOB_ROWS} || 60_000;

my $node = PostgreSQL::Test::Cluster->new('jobs');
$node->init(allows_streaming => 1);
$node->append_conf(
	'postgresql.conf', q{
restart_after_crash = on
max_worker_processes = 8
log_line_prefix = '%m [%p] %q%d %b '
});
$node->start;
$node->safe_psql('postgres', 'CREATE ROLE jowner LOGIN');

sub q1
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# as the migration's owner
sub qo
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, "SET ROLE jowner;\n$sql");
}

sub job
{
	my ($db) = @_;
	my $r = q1(
		$db, q{
		SELECT j.state, coalesce(j.rows_done, 0), j.migration_state, coalesce(j.pid, 0),
		       coalesce(j.last_error, ''),
		       coalesce((SELECT b.batches FROM customer_unify.backfill_state b, customer_unify.migration m
		                  WHERE m.name = 'm' AND b.migration_id = m.id), 0)
		  FROM customer_unify.jobs j WHERE j.name = 'm'});
	my ($state, $rows, $mstate, $pid, $err, $batches) = split /\|/, $r, -1;
	return {
		state     => $state // '',
		rows_done => $rows // 0,
		migration => $mstate // '',
		pid       => $pid // 0,
		error     => $err // '',
		batches   => $batches // 0,
	};
}

sub wait_job_state
{
	my ($db, $states, $what) = @_;
	my $list = join(',', map { "'$_'" } @$states);
	ok( $node->poll_query_until(
			$db, "SELECT state IN ($list) FROM customer_unify.jobs WHERE name = 'm'"),
		"$db: $what (job state in $list)")
	  or diag(explain(job($db)));
	return;
}

sub wait_progress
{
	my ($db, $min) = @_;
	ok( $node->poll_query_until(
			$db, qq{SELECT coalesce(sum(b.rows_done), 0) >= $min FROM customer_unify.backfill_state b
			        JOIN customer_unify.migration m ON m.id = b.migration_id WHERE m.name = 'm'}),
		"$db: the job copied at least $min rows")
	  or diag(explain(job($db)));
	return;
}

sub setup_db
{
	my ($db) = @_;
	q1('postgres', "CREATE DATABASE $db");
	q1(
		$db, qq{
		CREATE EXTENSION customer_unify;
		GRANT CREATE ON DATABASE $db TO jowner;
		GRANT CREATE ON SCHEMA public TO jowner;
	});
	qo(
		$db, qq{
		CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, nick text, phone text);
		INSERT INTO users SELECT g * 10 + g % 7, 'u' || g || '\@example.com', 'nick' || g, '+1555' || lpad(g::text, 7, '0')
		  FROM generate_series(1, $NROWS) g;
		ANALYZE users;
		SELECT customer_unify.split('m', 'users', 'profiles', ARRAY['nick', 'phone'], 'user_id');
		SELECT customer_unify.set_throttle('m', nice => 3, chunk_ms => NULL);
	});
	return;
}

sub launch
{
	my ($db, $batch) = @_;
	$batch //= 200;
	is(qo($db, "SELECT customer_unify.launch('m', batch_size => $batch)"), 'starting', "$db: launch() returns at once");
	return;
}

# writes while the job runs or is interrupted: the sync triggers mirror them
sub app_writes
{
	my ($db, $round) = @_;
	q1(
		$db, qq{
		UPDATE users SET nick = 'upd$round-' || id WHERE id % 997 = $round;
		DELETE FROM users WHERE id % 1999 = $round + 3;
		INSERT INTO users (id, email, nick) SELECT g * 10 + 8, 'ins$round-' || g, 'new$round'
		  FROM generate_series($round * 50 + 1, $round * 50 + 20) g ON CONFLICT DO NOTHING;
	});
	return;
}

sub check_done
{
	my ($db) = @_;
	my $j = job($db);
	is($j->{migration}, 'backfilled', "$db: the migration is backfilled");
	is($j->{state},     'finished',   "$db: the job is finished") or diag(explain($j));
	is(q1($db, q{SELECT count(*) FROM customer_unify.verify('m') WHERE NOT ok}), '0', "$db: verify() all ok");
	is( q1(
			$db, q{SELECT (SELECT count(*) FROM users) = count(*) AND count(*) = count(DISTINCT user_id)
			        FROM profiles}),
		't', "$db: as many profiles as users, no duplicate user_id");
	is( q1(
			$db, q{SELECT count(*) FROM users u FULL JOIN profiles p ON p.user_id = u.id
			        WHERE u.id IS NULL OR p.user_id IS NULL OR (u.nick, u.phone) IS DISTINCT FROM (p.nick, p.phone)}),
		'0', "$db: every user's moved values are in its profile");
	return;
}

# after an interruption: writes, resume(), the job finishes, the checks
sub resume_and_finish
{
	my ($db, $round) = @_;
	app_writes($db, $round);
	is(qo($db, q{SELECT customer_unify.resume('m')}), 'starting', "$db: resume() of the interrupted job");
	wait_job_state($db, ['finished', 'failed'], 'the resumed job finished');
	check_done($db);
	return;
}

# ---------------------------------------------------------------- detach
{
	my $db = 'detach';
	setup_db($db);
	# the launching psql session ends right after launch() returns
	launch($db);
	app_writes($db, 1);
	wait_job_state($db, ['finished', 'failed'], 'the job finished after its launcher disconnected');
	check_done($db);
	is( q1(
			$db, q{SELECT count(*) FROM customer_unify.step_log l JOIN customer_unify.migration m ON m.id = l.migration_id
			        WHERE m.name = 'm' AND l.phase = 'validate'}),
		'1', "$db: the job ran the backfill's end phases once");
}

# ---------------------------------------------------------------- pgbench (a concurrent load)
{
	my $db = 'pgbench';
	setup_db($db);
	# batches of about 5 ms, each followed by a sleep of twice its time
	qo($db, q{SELECT customer_unify.set_throttle('m', nice => 2, chunk_ms => 5)});
	# ids of setup_db's rows are g * 10 + g % 7, app_writes inserts g * 10 + 8: pgbench's own are g * 10 + 9
	my $script = $node->basedir . '/pgbench_users.sql';
	PostgreSQL::Test::Utils::append_to_file(
		$script, qq{\\set g random(1, $NROWS)
\\set r random(1, 100)
\\if :r <= 80
UPDATE users SET nick = 'pgb' || :g, phone = '+1666' || lpad((:g)::text, 7, '0') WHERE id = :g * 10 + :g % 7;
\\elif :r <= 92
INSERT INTO users (id, email, nick, phone) VALUES (:g * 10 + 9, 'pgb' || :g || '\@example.com', 'pgbnew', '+1777')
  ON CONFLICT (id) DO NOTHING;
\\elif :r <= 98
DELETE FROM users WHERE id = :g * 10 + 9;
\\else
DELETE FROM users WHERE id = :g * 10 + :g % 7;
\\endif
});
	my @runs;
	my $run;
	my $logdir = $node->basedir . '/pgbench_log';
	mkdir $logdir or die "mkdir $logdir: $!";
	my $pgb_start = sub {
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[
				'pgbench', '-n', '-c', '2', '-j', '2', '-T', '1', '-f', $script,
				'--log', '--log-prefix=' . $logdir . '/run' . scalar(@runs),
				$node->connstr($db)
			],
			'>', \$out, '2>', \$err);
		$run = { h => $h, out => \$out, err => \$err };
		return;
	};
	my $pgb_finish = sub {
		$run->{h}->finish;
		push @runs, { rc => $run->{h}->result(0), out => ${ $run->{out} }, err => ${ $run->{err} } };
		$run = undef;
		return;
	};

	# the load runs before the launch, during the whole job and until its last run ends
	$pgb_start->();
	usleep(300_000);
	launch($db);
	my ($seen_throttle, $state, $last) = (0, '', '');
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		$last = q1($db,
			q{SELECT state || '|' || throttled_ms || '|' || coalesce(throttle_reason, '') FROM customer_unify.jobs WHERE name = 'm'});
		my ($st, $tms, $reason) = split /\|/, $last, -1;
		$state = $st;
		$seen_throttle = 1 if $st eq 'running' && $tms > 0 && $reason ne '';
		last if $st ne 'starting' && $st ne 'running';
		# a run that ended (its output read to the end, its process reaped) is followed by the next
		$run->{h}->pump_nb if $run->{h}->pumpable;
		if (!$run->{h}->pumpable)
		{
			$pgb_finish->();
			$pgb_start->();
		}
		usleep(100_000);
	}
	$pgb_finish->();
	is($state, 'finished', "$db: the throttled job finished under the load") or diag($last);
	ok($seen_throttle, "$db: while running, the job showed throttled_ms > 0 and a throttle_reason") or diag($last);
	# the load ran throughout the job: from the per-transaction logs (end of each
	# transaction, epoch seconds), no stretch of the job's run without a commit
	my ($t0, $t1) = split /\|/,
	  q1($db, q{SELECT extract(epoch FROM started_at) || '|' || extract(epoch FROM finished_at) FROM customer_unify.jobs WHERE name = 'm'});
	my @ends;
	for my $f (glob("$logdir/run*"))
	{
		open my $fh, '<', $f or die "$f: $!";
		while (<$fh>)
		{
			my @c = split ' ';
			push @ends, $c[4] + $c[5] / 1e6 if @c >= 6;
		}
		close $fh;
	}
	my @inside = sort { $a <=> $b } grep { $_ > $t0 && $_ < $t1 } @ends;
	my ($gap, $prev) = (0, $t0);
	for my $e (@inside, $t1)
	{
		$gap = $e - $prev if $e - $prev > $gap;
		$prev = $e;
	}
	ok(@inside > 0 && $gap < 2,
		sprintf("$db: pgbench committed throughout the job's %.1f s (%d transactions, %d runs, longest gap %.3f s)",
			$t1 - $t0, scalar(@inside), scalar(@runs), $gap));
	my @bad = grep {
		     $_->{rc} != 0
		  || $_->{out} !~ /^number of transactions actually processed: [1-9]/m
		  || $_->{out} !~ /^number of failed transactions: 0 /m
	} @runs;
	is(scalar(@bad), 0, "$db: every pgbench run exited 0, processed transactions and none failed")
	  or diag(explain($bad[0]));
	check_done($db);
	is( q1($db, q{SELECT throttled_ms > 0 AND throttle_reason = 'nice' AND batch_size <> 200 FROM customer_unify.jobs WHERE name = 'm'}),
		't', "$db: throttled_ms and throttle_reason stay recorded, chunk_ms changed the batch size")
	  or diag(q1($db, q{SELECT throttled_ms, throttle_reason, batch_size FROM customer_unify.jobs WHERE name = 'm'}));
	ok( q1($db, q{SELECT count(*) FROM users WHERE id % 10 = 9}) > 0
		  && q1($db, q{SELECT count(*) FROM users WHERE nick LIKE 'pgb%'}) > 0,
		"$db: pgbench's inserts and updates are in users (and so, by the checks, in profiles)");
}

# ---------------------------------------------------------------- pause
{
	my $db = 'pause';
	setup_db($db);
	launch($db);
	wait_progress($db, 1000);
	is(qo($db, q{SELECT customer_unify.pause('m')}), 'pausing', "$db: pause() asks the worker to stop");
	wait_job_state($db, ['paused'], 'the job paused');
	my $before = job($db);
	is($before->{pid}, '0', "$db: a paused job has no worker");
	ok($before->{rows_done} > 0 && $before->{rows_done} < $NROWS, "$db: paused mid-backfill");
	# nothing may advance while it is paused
	sleep 2;
	my $after = job($db);
	is_deeply([ $after->{rows_done}, $after->{batches}, $after->{state} ],
		[ $before->{rows_done}, $before->{batches}, 'paused' ], "$db: nothing advanced while paused");
	resume_and_finish($db, 2);
}

# ---------------------------------------------------------------- cancel
{
	my $db = 'cancel';
	setup_db($db);
	launch($db);
	wait_progress($db, 1000);
	is(qo($db, q{SELECT customer_unify.cancel('m')}), 'cancelling', "$db: cancel() asks the worker to stop");
	wait_job_state($db, ['cancelled'], 'the job was cancelled');
	my $j = job($db);
	is($j->{migration}, 'started', "$db: the migration is still started");
	ok($j->{rows_done} > 0 && $j->{rows_done} < $NROWS, "$db: cancelled mid-backfill");
	# the checkpoint: every source row at or below last_key is in profiles, equal
	is( q1(
			$db, q{SELECT count(*) FROM users u
			        JOIN customer_unify.backfill_state b ON true
			        JOIN customer_unify.migration m ON m.id = b.migration_id AND m.name = 'm'
			        LEFT JOIN profiles p ON p.user_id = u.id
			        WHERE u.id <= b.last_key::bigint AND (p.user_id IS NULL OR (u.nick, u.phone) IS DISTINCT FROM (p.nick, p.phone))}),
		'0', "$db: every row up to the checkpoint is copied");
	is(q1($db, q{SELECT count(*) = count(DISTINCT user_id) FROM profiles}), 't', "$db: no duplicates after the cancel");
	app_writes($db, 3);
	# the foreground procedure finishes what the job left
	qo($db, q{CALL customer_unify.backfill('m', batch_size => 5000)});
	is(q1($db, q{SELECT count(*) FROM customer_unify.verify('m') WHERE NOT ok}), '0', "$db: verify() all ok after a foreground backfill");
	is( q1($db, q{SELECT (SELECT count(*) FROM users) = count(*) AND count(*) = count(DISTINCT user_id) FROM profiles}),
		't', "$db: as many profiles as users, no duplicates");
	is(job($db)->{state}, 'cancelled', "$db: the job stays cancelled");
}

# ---------------------------------------------------------------- kill9 (the worker)
{
	my $db = 'kill9';
	setup_db($db);
	launch($db);
	wait_progress($db, 1000);
	my $pid = job($db)->{pid};
	ok($pid > 0, "$db: the job has a worker");
	is( q1($db, "SELECT backend_type || '/' || application_name || '/' || usename FROM pg_stat_activity WHERE pid = $pid"),
		'customer_unify job/customer_unify job m/jowner', "$db: the worker is named and runs as the owner");
	kill 'KILL', $pid;
	# the postmaster restarts the server after a killed backend
	ok($node->poll_query_until($db, q{SELECT state = 'interrupted' FROM customer_unify.jobs WHERE name = 'm'}),
		"$db: after the crash the job shows interrupted")
	  or diag(explain(job($db)));
	my $j = job($db);
	ok($j->{rows_done} < $NROWS, "$db: it was killed mid-backfill");
	is($j->{migration}, 'started', "$db: the migration is still started");
	my ($rc, $out, $err) = $node->psql($db, "SET ROLE jowner; SELECT customer_unify.launch('m')");
	like($err, qr/its job is interrupted/, "$db: launch() of an interrupted job is refused (resume it)");
	resume_and_finish($db, 4);
}

# ---------------------------------------------------------------- immediate (the postmaster)
{
	my $db = 'immediate';
	setup_db($db);
	launch($db);
	wait_progress($db, 1000);
	$node->stop('immediate');
	$node->start;
	my $j = job($db);
	is($j->{state}, 'interrupted', "$db: after an immediate stop and start the job shows interrupted");
	ok($j->{rows_done} > 0 && $j->{rows_done} < $NROWS, "$db: it was stopped mid-backfill");
	resume_and_finish($db, 5);
}

# ---------------------------------------------------------------- lag (max_lag_bytes)
{
	my $db = 'lag';
	setup_db($db);
	$node->safe_psql('postgres', 'GRANT pg_read_all_stats TO jowner');
	$node->backup('lag_backup');
	my $standby = PostgreSQL::Test::Cluster->new('jobs_standby');
	$standby->init_from_backup($node, 'lag_backup', has_streaming => 1);
	$standby->append_conf('postgresql.conf', "wal_receiver_status_interval = 1\n");
	$standby->start;
	$node->wait_for_catchup($standby);
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	qo($db, q{SELECT customer_unify.set_throttle('m', max_lag_bytes => 65536, nice => NULL, chunk_ms => NULL)});
	launch($db);
	ok( $node->poll_query_until(
			$db, q{SELECT throttle_reason LIKE 'replication lag % bytes over max_lag_bytes' FROM customer_unify.jobs WHERE name = 'm'}),
		"$db: the job holds while the standby's replay lags")
	  or diag(explain(job($db)));
	my $j = job($db);
	ok($j->{state} eq 'running' && $j->{rows_done} < $NROWS, "$db: held mid-backfill, still running");
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	wait_job_state($db, ['finished', 'failed'], 'the job went on once the standby caught up, and finished');
	check_done($db);
	ok(q1($db, q{SELECT throttled_ms > 0 FROM customer_unify.jobs WHERE name = 'm'}) eq 't', "$db: the hold is counted in throttled_ms");
	$standby->stop;
}

# ---------------------------------------------------------------- autostart (shared_preload_libraries)
{
	my $db = 'autostart';
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'customer_unify'\n");
	$node->restart;
	setup_db($db);
	launch($db);
	wait_progress($db, 1000);
	$node->stop('immediate');
	$node->start;
	# no resume(): the static launcher resumes interrupted jobs at start
	wait_job_state($db, ['finished', 'failed'], 'the launcher resumed the interrupted job, which finished');
	check_done($db);
	is(q1($db, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'customer_unify job launcher'}),
		'1', "$db: one launcher waits for the next restart");
	# the paused job of 'pause' and the cancelled one of 'cancel' stay as they were
	is(q1('cancel', q{SELECT state FROM customer_unify.jobs WHERE name = 'm'}), 'cancelled',
		'the launcher leaves a cancelled job alone');
}

# ---------------------------------------------------------------- no worker slots
{
	my $db = 'detach';
	$node->append_conf('postgresql.conf', "max_worker_processes = 0\n");
	$node->restart;
	qo($db, q{SELECT customer_unify.rollback('m'); SELECT customer_unify.split('m2', 'users', 'p2', ARRAY['nick'], 'user_id')});
	my ($rc, $out, $err) =
	  $node->psql($db, "\\set VERBOSITY verbose\nSET ROLE jowner;\nSELECT customer_unify.launch('m2')");
	like($err, qr/ERROR:  53400: could not start a background worker for the job of migration "m2"/,
		'launch() without a free worker slot fails with 53400');
	like($err, qr/HINT:  Raise max_worker_processes/, 'its hint names max_worker_processes');
	is(q1($db, q{SELECT count(*) FROM customer_unify.jobs WHERE name = 'm2'}), '0',
		'the failed launch left no job behind');
}

$node->stop;
done_testing();
