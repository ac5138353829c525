# 001_crash_resume.pl - customer_unify backfill survives crashes and cancels.
#
# For each way of interrupting a running backfill
#   kill9      SIGKILL of the postmaster and every server process (power loss)
#   backend    SIGKILL of the backend running the backfill (postmaster crash-restart)
#   immediate  pg_ctl stop -m immediate, then start
#   cancel     pg_cancel_backend of the backend running the backfill
#   terminate  pg_terminate_backend of the backend running the backfill
# a fresh database gets a users table (~200k rows, sparse bigint ids), a split
# migration users -> profiles is started (its per-migration sync triggers,
# customer_unify_<id>_*, ENABLE ALWAYS), and
#   1. CALL customer_unify.backfill('m', batch_size => 1000, sleep_ms => ...) runs
#      in a background psql while another session updates, deletes and inserts
#      users rows (behind the checkpoint, ahead of it, and around it);
#   2. the backfill is interrupted mid-way;
#   3. the checkpoint is checked: state still 'started', one copy stream
#      ('main'), rows_done > 0 and not finished, the binary position equal to
#      last_key, every source row at or below last_key present and equal in
#      profiles, no orphan profile but of a user deleted while a batch copied
#      it (the end phase removes those);
#   4. more writes while no backfill runs, then the backfill is resumed (with
#      concurrent writes again) and runs to completion;
#   5. state 'backfilled', finished_at set and the checkpoint at the copy's
#      end key, verify() all ok (state 'verified'), target count ==
#      source count, no duplicate link values, every source row's moved values
#      equal the target's, the FK exists and is valid, and the source equals a
#      shadow copy that received the same writes without the extension;
#      and no server process crashed.
# Two more scenarios without an interruption:
#   longtx     an application transaction holds a row a few batches ahead
#              far longer than lock_timeout_ms: the batch times out and is
#              retried; no row of it may be skipped
#   writer     a transaction updates a row (the batch waits for it) and then
#              deletes another row of the same batch: no deadlock, no failure
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $NROWS      = $ENV{CU_TAP_ROWS} || 200_000;
my $BATCH      = 1000;
my $SLEEP_MS   = 40;                  # between batches of the interrupted run
my $MOVED      = 'first_name, last_name, phone, birth_date';
my @SCENARIOS  = qw(kill9 backend immediate cancel terminate);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
restart_after_crash = on
max_connections = 40
shared_buffers = 64MB
log_min_duration_statement = -1
log_line_prefix = '%m [%p] %q%d '
});
$node->start;

# ------------------------------------------------------------------ helpers

sub q1
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# The single row of status for migration 'm' as a hash.
sub bstate
{
	my ($db) = @_;
	my $r = q1(
		$db, q{
		SELECT m.state, coalesce(b.rows_done, 0), coalesce(b.last_key::text, ''),
		       b.finished_at IS NOT NULL, coalesce(b.batches, 0),
		       -- the binary checkpoint (int8send: 8 bytes, big-endian) is the key last_key shows
		       CASE WHEN b.position IS NULL THEN b.last_key IS NULL
		            ELSE length(b.position) = 8
		                 AND ('x' || encode(b.position, 'hex'))::bit(64)::bigint::text = b.last_key END,
		       (SELECT count(*) FROM customer_unify.backfill_state x WHERE x.migration_id = m.id)
		  FROM customer_unify.migration m
		  LEFT JOIN customer_unify.backfill_state b ON b.migration_id = m.id AND b.stream = 'main'
		 WHERE m.name = 'm'});
	my ($state, $rows, $lk, $fin, $batches, $pos_ok, $streams) = split /\|/, $r, -1;
	my $lknum;
	$lknum = $1 if defined $lk && $lk =~ /^\D*?(-?\d+)\D*$/;
	return {
		state       => $state // '',
		rows_done   => $rows // 0,
		last_key    => $lk,
		last_key_n  => $lknum,
		finished    => ($fin // '') eq 't',
		batches     => $batches // 0,
		position_ok => ($pos_ok // '') eq 't',
		streams     => $streams // 0,
	};
}

sub setup_db
{
	my ($db) = @_;
	q1('postgres', "CREATE DATABASE $db");
	q1(
		$db, qq{
		CREATE EXTENSION customer_unify;
		CREATE TABLE users (
		    id               bigint PRIMARY KEY,
		    email            text NOT NULL,
		    first_name       text,
		    last_name        text NOT NULL DEFAULT '',
		    phone            text,
		    birth_date       date,
		    marketing_opt_in boolean NOT NULL DEFAULT false,
		    created_at       timestamptz NOT NULL DEFAULT '2020-01-01'
		);
		-- ids are sparse: g*10 + g%7, so k*10+7 .. k*10+9 are free for
		-- inserts behind and ahead of the backfill checkpoint
		INSERT INTO users
		SELECT g * 10 + g % 7,
		       'user' || g || '\@example.com',
		       CASE WHEN g % 17 = 0 THEN NULL ELSE 'First' || g END,
		       'Last' || (g % 1000),
		       CASE WHEN g % 5 = 0 THEN NULL ELSE '+1555' || lpad(g::text, 7, '0') END,
		       CASE WHEN g % 11 = 0 THEN NULL ELSE date '1950-01-01' + (g % 20000) END,
		       g % 3 = 0,
		       timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute'
		  FROM generate_series(1, $NROWS) g;
		-- the oracle: gets every write the test makes, knows nothing of the extension
		CREATE TABLE shadow_users AS SELECT * FROM users;
		ALTER TABLE shadow_users ADD PRIMARY KEY (id);
		VACUUM ANALYZE users;
		VACUUM ANALYZE shadow_users;
	});
	my $id = q1(
		$db, q{
		SELECT customer_unify.split(name => 'm', source => 'public.users'::regclass,
		    target => 'profiles',
		    columns => ARRAY['first_name','last_name','phone','birth_date'],
		    link_column => 'user_id')});
	like($id, qr/^\d+$/, "$db: split() returns a migration id");
	is(bstate($db)->{state}, 'planned', "$db: state planned after split()");
	is(q1($db, q{SELECT customer_unify.start('m')}),
		'started', "$db: start() returns 'started'");
	is(q1($db, q{SELECT to_regclass('public.profiles') IS NOT NULL}),
		't', "$db: start() created public.profiles");
	# 1.1: the sync triggers are named per migration and fire ALWAYS
	is( q1(
			$db, qq{SELECT string_agg(tgrelid::regclass || '.' || tgname || ':' || tgenabled::text, ',' ORDER BY tgrelid::regclass::text, tgname)
			  FROM pg_trigger WHERE tgrelid IN ('public.users'::regclass, 'public.profiles'::regclass) AND NOT tgisinternal}),
		join(',',
			map { "$_:A" } "profiles.customer_unify_${id}_sync", "profiles.customer_unify_${id}_truncate",
			"users.customer_unify_${id}_flush", "users.customer_unify_${id}_sync",
			"users.customer_unify_${id}_truncate", "users.customer_unify_${id}_truncate_begin"),
		"$db: start() created the migration's sync triggers, ENABLE ALWAYS");
	my $st = bstate($db);
	ok($st->{streams} == 1 && $st->{rows_done} == 0 && $st->{last_key} eq '' && !$st->{finished},
		"$db: one copy stream 'main', nothing copied yet");
	return;
}

# Run the same write on users and on shadow_users, in one transaction.
sub both
{
	my ($db, @stmts) = @_;
	my $sql = "BEGIN;\n";
	for my $s (@stmts)
	{
		for my $t ('users', 'shadow_users')
		{
			(my $x = $s) =~ s/\bTBL\b/$t/g;
			$sql .= "$x;\n";
		}
	}
	$sql .= "COMMIT;\n";
	# An application write must never fail because of the migration (e.g.
	# a deadlock with a backfill batch): report it, then retry like an
	# application would, so that the remaining checks still run.
	for my $try (1 .. 5)
	{
		my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 1);
		return if $rc == 0;
		fail("$db: application write failed (try $try): $err");
		diag($sql);
	}
	die "$db: application write failed 5 times";
}

# Writes around the current checkpoint: rows already copied, rows in or near
# the batch being copied, rows not copied yet; updates of moved and of kept
# columns, deletes, inserts into id gaps behind and ahead of the checkpoint and
# beyond the current maximum, a primary key change.
sub concurrent_writes
{
	my ($db, $round) = @_;
	my $st = bstate($db);
	my $lk = $st->{last_key_n} // 0;
	my $maxid = q1($db, 'SELECT max(id) FROM shadow_users');
	my $r = $round;

	# rows behind the checkpoint (already copied), up to 5 of them
	my $behind = q1(
		$db, qq{SELECT coalesce(string_agg(id::text, ','), '0') FROM (
		  SELECT id FROM shadow_users WHERE id <= $lk AND id % 10 < 7
		   ORDER BY id DESC OFFSET $r * 7 LIMIT 5) s});
	# rows right after the checkpoint (likely in the batch being copied)
	my $near = q1(
		$db, qq{SELECT coalesce(string_agg(id::text, ','), '0') FROM (
		  SELECT id FROM shadow_users WHERE id > $lk AND id % 10 < 7
		   ORDER BY id OFFSET $r * 3 LIMIT 5) s});
	# rows far ahead of the checkpoint
	my $ahead = q1(
		$db, qq{SELECT coalesce(string_agg(id::text, ','), '0') FROM (
		  SELECT id FROM shadow_users WHERE id > $lk + 200000 AND id % 10 < 7
		   ORDER BY id OFFSET $r * 11 LIMIT 5) s});

	for my $ids ($behind, $near, $ahead)
	{
		my @ids = split /,/, $ids;
		next unless @ids >= 5;
		# moved columns
		both($db,
			"UPDATE TBL SET first_name = 'upd$r-' || id, phone = NULL, birth_date = date '2001-02-03' WHERE id = $ids[0]"
		);
		# kept column only
		both($db,
			"UPDATE TBL SET email = 'changed$r-' || id || '\@example.org', marketing_opt_in = NOT marketing_opt_in WHERE id = $ids[1]"
		);
		# both, set to NULL and back
		both(
			$db,
			"UPDATE TBL SET first_name = NULL, last_name = 'L$r', email = 'e$r-' || id WHERE id = $ids[2]",
			"UPDATE TBL SET first_name = 'again$r' WHERE id = $ids[2]");
		# delete
		both($db, "DELETE FROM TBL WHERE id = $ids[3]");
		# primary key change into a free gap (id % 10 = 8)
		my $newid = $ids[4] - ($ids[4] % 10) + 8;
		both($db,
			"UPDATE TBL SET id = $newid, first_name = 'moved$r' WHERE id = $ids[4] "
			  . "AND NOT EXISTS (SELECT 1 FROM TBL t2 WHERE t2.id = $newid)"
		);
		# insert into a free gap next to these rows (id % 10 = 9)
		my $gap = $ids[0] - ($ids[0] % 10) + 9;
		both($db,
			"INSERT INTO TBL (id, email, first_name, last_name, phone, birth_date, marketing_opt_in, created_at) "
			  . "SELECT $gap, 'gap$r-$gap\@example.com', 'Gap$r', 'Inserted', '+15550000000', date '1999-09-09', true, timestamptz '2021-01-01 00:00:00+00' "
			  . "WHERE NOT EXISTS (SELECT 1 FROM TBL t2 WHERE t2.id = $gap)"
		);
	}
	# a multi-row transaction touching many rows ahead and behind
	both(
		$db,
		"UPDATE TBL SET last_name = last_name || '-m$r' WHERE id % 9973 = $r",
		"DELETE FROM TBL WHERE id % 99991 = $r + 17",
		"INSERT INTO TBL (id, email, first_name, last_name, phone, birth_date, marketing_opt_in, created_at) "
		  . "SELECT $maxid + $r * 1000 + g, 'new$r-' || g || '\@example.com', 'New' || g, 'Newer', NULL, NULL, false, timestamptz '2022-01-01 00:00:00+00' "
		  . "FROM generate_series(1, 20) g");
	return;
}

# Start CALL backfill in a background psql; returns (session, backend pid).
sub start_backfill
{
	my ($db, $sleep_ms, $lock_timeout_ms) = @_;
	my $lt = defined $lock_timeout_ms ? ", lock_timeout_ms => $lock_timeout_ms" : '';
	my $bg = $node->background_psql($db, on_error_stop => 0);
	$bg->set_query_timer_restart;
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	$bg->query_until(qr/backfill_starting/,
		    "\\echo backfill_starting\n"
		  . "CALL customer_unify.backfill('m', batch_size => $BATCH, sleep_ms => $sleep_ms$lt);\n"
		  . "\\echo backfill_returned\n");
	return ($bg, $pid);
}

# Wait for the background CALL to return; returns its stderr.
sub wait_backfill
{
	my ($bg) = @_;
	$bg->query_until(qr/backfill_returned/, '');
	my $err = $bg->{stderr};
	$bg->{stderr} = '';
	return $err;
}

sub close_bg
{
	my ($bg) = @_;
	eval { $bg->quit; 1 } or eval { $bg->{run}->kill_kill; 1 };
	return;
}

# Wait until the backfill has committed more than $min rows and is not finished.
sub wait_rows_done
{
	my ($db, $min, $pid) = @_;
	# stop waiting early if the backfill's backend went away (it crashed)
	my $gone = defined $pid
	  ? "OR NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $pid)"
	  : '';
	my $ok = $node->poll_query_until(
		$db, qq{
		SELECT b.rows_done > $min OR b.finished_at IS NOT NULL $gone
		  FROM customer_unify.backfill_state b
		  JOIN customer_unify.migration m ON m.id = b.migration_id
		 WHERE m.name = 'm'});
	my $st = bstate($db);
	ok($ok && $st->{rows_done} > $min && !$st->{finished},
		"$db: backfill in progress (rows_done $st->{rows_done} > $min, not finished)");
	return $st;
}

sub pid_alive
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $line = <$fh>;
	close $fh;
	return 0 unless defined $line;
	# a zombie (state Z) has released everything
	return $line =~ /^\d+ \(.*\) Z /s ? 0 : 1;
}

sub children_of
{
	my ($ppid) = @_;
	my @kids;
	opendir my $dh, '/proc' or die "cannot read /proc: $!";
	for my $p (grep { /^\d+$/ } readdir $dh)
	{
		open my $fh, '<', "/proc/$p/stat" or next;
		my $line = <$fh>;
		close $fh;
		next unless defined $line && $line =~ /^\d+ \(.*\) \S (\d+) /s;
		push @kids, $p if $1 == $ppid;
	}
	closedir $dh;
	return @kids;
}

sub wait_server_up
{
	my ($db) = @_;
	ok($node->poll_query_until($db, 'SELECT NOT pg_is_in_recovery()'),
		"$db: server accepts connections again");
	return;
}

# ------------------------------------------------------------ interruptions

sub interrupt
{
	my ($how, $db, $bg, $pid) = @_;
	if ($how eq 'kill9')
	{
		# Power loss: freeze the postmaster so it forks nothing more, SIGKILL
		# every server process, then the postmaster itself.
		my $pm = $node->{_pid};
		kill 'STOP', $pm;
		my @kids = children_of($pm);
		ok(scalar(@kids) >= 3, "$db: found the server's processes (" . scalar(@kids) . ")");
		kill 'KILL', @kids;
		$node->kill9;
		for my $i (1 .. 600)
		{
			last unless grep { pid_alive($_) } ($pm, @kids);
			usleep(100_000);
		}
		ok(!(grep { pid_alive($_) } ($pm, @kids)), "$db: every server process is gone");
		# The killed postmaster may linger as an unreaped zombie (PID 1 of a
		# container does not always reap), which makes its lock files look
		# live; after a real power loss they would be stale: drop them.
		unlink($node->data_dir . '/postmaster.pid');
		unlink($node->host . '/.s.PGSQL.' . $node->port . '.lock');
		close_bg($bg);
		$node->start;
		wait_server_up($db);
	}
	elsif ($how eq 'backend')
	{
		my $off = -s $node->logfile;
		ok(kill('KILL', $pid), "$db: SIGKILL sent to backfill backend $pid");
		close_bg($bg);
		# the postmaster notices, kills every backend and runs crash recovery
		my $re = qr/terminated by signal 9: Killed.*all server processes terminated; reinitializing.*database system is ready to accept connections/s;
		ok(eval { $node->wait_for_log($re, $off); 1 },
			"$db: postmaster saw the backend killed, reinitialized and is ready");
		wait_server_up($db);
	}
	elsif ($how eq 'immediate')
	{
		$node->stop('immediate');
		close_bg($bg);
		$node->start;
		wait_server_up($db);
	}
	elsif ($how eq 'cancel' || $how eq 'terminate')
	{
		my $fn = $how eq 'cancel' ? 'pg_cancel_backend' : 'pg_terminate_backend';
		is(q1($db, "SELECT $fn($pid)"), 't', "$db: $fn($pid)");
		if ($how eq 'cancel')
		{
			my $err = wait_backfill($bg);
			like($err, qr/canceling statement due to user request/,
				"$db: backfill reports the cancel");
			# the session is usable and not left inside a transaction
			is($bg->query_safe('SELECT 1'), '1', "$db: session usable after cancel");
		}
		close_bg($bg);
		ok( $node->poll_query_until(
				$db, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
			"$db: backfill backend $pid no longer active");
	}
	else
	{
		die "unknown interruption $how";
	}
	return;
}

# ------------------------------------------------------------------ checks

# No server process died of anything but the SIGKILLs this test sends.
sub server_log_clean
{
	my ($db, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @bad = grep { /terminated by signal (?!9:)|PANIC|TRAP:|terminated by exception/ }
	  split /\n/, $log;
	is(scalar(@bad), 0, "$db: no server process crashed (no segfault, abort, PANIC)")
	  or diag(join("\n", @bad));
	return;
}

# Invariants that hold at any checkpoint: no orphan, no duplicate, every row up
# to last_key present and equal.
sub check_checkpoint
{
	my ($db, $before, $crashed) = @_;
	my $st = bstate($db);
	is($st->{state}, 'started', "$db: state still 'started' after the interruption");
	ok($st->{rows_done} > 0, "$db: checkpoint kept rows_done ($st->{rows_done}) > 0");
	if ($crashed)
	{
		# batches may commit asynchronously: a crash can take the last few
		# back, batch and checkpoint together (checked below), never more
		ok($st->{rows_done} <= $before->{rows_done} + 50 * $BATCH,
			"$db: checkpoint plausible after the crash ($st->{rows_done}, seen $before->{rows_done})");
	}
	else
	{
		ok($st->{rows_done} >= $before->{rows_done},
			"$db: checkpoint not behind what was seen committed ($st->{rows_done} >= $before->{rows_done})");
	}
	ok(!$st->{finished}, "$db: backfill not marked finished");
	ok($st->{rows_done} < $NROWS, "$db: rows_done ($st->{rows_done}) < $NROWS");
	ok(defined $st->{last_key_n}, "$db: last_key is a number ($st->{last_key})");
	ok($st->{position_ok}, "$db: position holds last_key in binary");
	is($st->{streams}, 1, "$db: one backfill_state row (stream 'main')");
	my $lk = $st->{last_key_n} // 0;
	is( q1(
			$db, qq{
		SELECT count(*) FROM users u LEFT JOIN profiles p ON p.user_id = u.id
		 WHERE u.id <= $lk
		   AND (p.user_id IS NULL
		        OR (u.first_name, u.last_name, u.phone, u.birth_date)
		           IS DISTINCT FROM (p.first_name, p.last_name, p.phone, p.birth_date))}
		),
		'0',
		"$db: every source row up to last_key is in profiles with equal values");
	# (a user the writers deleted while a batch was copying it from its
	# snapshot can leave its profile behind until the end phase removes it,
	# by design, see src/backfill.c; the final checks find no orphan at all)
	is( q1(
			$db,
			q{SELECT count(*) FROM profiles p WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p.user_id)
			     AND EXISTS (SELECT 1 FROM shadow_users s WHERE s.id = p.user_id)}
		),
		'0',
		"$db: no orphan profile at the checkpoint but of users the writers deleted meanwhile");
	is( q1(
			$db,
			q{SELECT count(*) FROM (SELECT user_id FROM profiles GROUP BY user_id HAVING count(*) > 1) d}
		),
		'0',
		"$db: no duplicate user_id at the checkpoint");
	return $st;
}

sub check_complete
{
	my ($db) = @_;
	my $st = bstate($db);
	is($st->{state}, 'backfilled', "$db: state 'backfilled' after the resumed backfill");
	ok($st->{finished}, "$db: backfill_state.finished_at set");
	ok($st->{position_ok} && defined $st->{last_key_n}, "$db: position holds last_key ($st->{last_key}) in binary");
	is( q1($db, q{SELECT b.last_key = b.end_key AND b.position = b.end_position FROM customer_unify.backfill_state b}),
		't', "$db: the checkpoint is at the copy's end key");

	my $fk = q1(
		$db, q{
		SELECT string_agg(conname || ':' || convalidated, ',')
		  FROM pg_constraint WHERE conrelid = 'public.profiles'::regclass AND contype = 'f'});
	is($fk, 'profiles_user_id_fkey:true', "$db: FK profiles_user_id_fkey present and validated");

	my $ver = q1(
		$db, q{
		SELECT count(*) || '/' || count(*) FILTER (WHERE ok)
		  FROM customer_unify.verify('m')});
	my ($n, $nok) = split m{/}, $ver;
	ok($n > 0 && $n == $nok, "$db: verify() all ok ($nok of $n checks)")
	  or diag(q1($db, q{SELECT * FROM customer_unify.verify('m') WHERE ok IS NOT TRUE}));
	is(bstate($db)->{state}, 'verified', "$db: state 'verified' after verify()");

	is( q1($db, q{SELECT (SELECT count(*) FROM profiles) - (SELECT count(*) FROM users)}),
		'0', "$db: profiles count equals users count");
	is( q1(
			$db,
			q{SELECT count(*) FROM (SELECT user_id FROM profiles GROUP BY user_id HAVING count(*) > 1) d}
		),
		'0',
		"$db: no duplicate user_id in profiles");
	my $diff_sql = qq{
		FROM users u FULL JOIN profiles p ON p.user_id = u.id
		WHERE u.id IS NULL OR p.user_id IS NULL
		   OR (u.first_name, u.last_name, u.phone, u.birth_date)
		      IS DISTINCT FROM (p.first_name, p.last_name, p.phone, p.birth_date)};
	is(q1($db, "SELECT count(*) $diff_sql"),
		'0', "$db: every source row's moved values equal the target's")
	  or diag(q1($db, "SELECT u.id, p.user_id, u.first_name, p.first_name, u.last_name, p.last_name $diff_sql LIMIT 10"));

	# nothing lost in the source: it equals the shadow copy that got the same writes
	my $src_diff = qq{
		FROM (TABLE users EXCEPT ALL TABLE shadow_users) a
		FULL JOIN (TABLE shadow_users EXCEPT ALL TABLE users) b ON false};
	is(q1($db, "SELECT count(*) $src_diff"),
		'0', "$db: source table equals the shadow copy (no write lost or altered)")
	  or diag(q1($db, "SELECT a.id, a.first_name, b.id, b.first_name $src_diff LIMIT 10"));
	is(q1($db, 'SELECT count(*) FROM users'),
		q1($db, 'SELECT count(*) FROM shadow_users'),
		"$db: source row count equals the shadow's");
	return;
}

# The backfill call must succeed; if it failed anyway (a bug, reported by
# the failed assertion), finish it without concurrent writes so that the
# data checks that follow still say whether anything was lost.
sub finish_after_error
{
	my ($db, $err, $what) = @_;
	return if unlike($err // '', qr/ERROR|FATAL/, "$db: $what completed without error");
	diag($err);
	my ($rc, $out, $stderr) =
	  $node->psql($db, "CALL customer_unify.backfill('m', batch_size => $BATCH)");
	diag("re-running the backfill to completion: rc=$rc $stderr");
	return;
}

# ------------------------------------------------------------------ scenarios

for my $how (@SCENARIOS)
{
	my $db = "cu_$how";
	note "==================== scenario $how ====================";
	my $log_offset = -s $node->logfile;
	setup_db($db);

	my ($bg, $pid) = start_backfill($db, $SLEEP_MS);
	my $st = wait_rows_done($db, 0, $pid);
	concurrent_writes($db, 1);
	$st = wait_rows_done($db, $st->{rows_done} + 2 * $BATCH, $pid);
	concurrent_writes($db, 2);
	$st = wait_rows_done($db, $st->{rows_done}, $pid);

	interrupt($how, $db, $bg, $pid);
	check_checkpoint($db, $st, scalar(grep { $how eq $_ } qw(kill9 backend immediate)));

	# writes while no backfill runs at all
	concurrent_writes($db, 3);

	# resume, with writes going on meanwhile, and run to completion
	($bg, $pid) = start_backfill($db, 5);
	concurrent_writes($db, 4);
	concurrent_writes($db, 5);
	my $err = wait_backfill($bg);
	close_bg($bg);
	finish_after_error($db, $err, 'resumed backfill');

	check_complete($db);

	# a second CALL on a finished backfill is harmless: no-op or a clean error
	my ($rc, $out, $stderr) = $node->psql($db,
		"\\set VERBOSITY sqlstate\nCALL customer_unify.backfill('m', batch_size => $BATCH)");
	ok($rc == 0 || $stderr =~ /55000/,
		"$db: backfill after completion is a no-op or fails with 55000")
	  or diag("rc=$rc stderr=$stderr");
	is(q1($db, q{SELECT count(*) FILTER (WHERE NOT ok) FROM customer_unify.verify('m')}),
		'0', "$db: verify() still all ok after a repeated backfill call");
	server_log_clean($db, $log_offset);

	q1('postgres', "DROP DATABASE $db");
}

# ------------------------------------------------- a long application transaction
# An application transaction keeps a row a few batches ahead of the
# checkpoint locked (uncommitted update) for much longer than the backfill's
# lock_timeout_ms: the batch that reaches the row times out, is rolled back,
# backs off and is retried until the transaction commits. No row of that
# batch may be skipped, and the held update must win.
{
	my $db = 'cu_longtx';
	note "==================== scenario long transaction ====================";
	my $log_offset = -s $node->logfile;
	setup_db($db);
	my ($bg, $pid) = start_backfill($db, 20, 200);
	my $st = wait_rows_done($db, 0, $pid);
	# far enough ahead that the backfill (20 ms pause per batch) cannot have
	# copied it before the transaction below holds it
	my $tx = $node->background_psql($db);
	my $txpid = $tx->query_safe('SELECT pg_backend_pid()');
	$txpid =~ s/\s+//g;
	my $held = q1($db,
		"SELECT id FROM users WHERE id > (SELECT last_key::bigint FROM customer_unify.backfill_state) "
		  . "ORDER BY id OFFSET 40 * $BATCH + 17 LIMIT 1");
	$tx->query_safe(
		"BEGIN; UPDATE users SET first_name = 'held' WHERE id = $held; "
		  . "UPDATE shadow_users SET first_name = 'held' WHERE id = $held;");
	ok( q1($db, 'SELECT last_key::bigint FROM customer_unify.backfill_state') < $held,
		"$db: row $held is not yet behind the checkpoint when the transaction takes it");
	ok( $node->poll_query_until(
			$db, "SELECT $txpid = ANY (pg_catalog.pg_blocking_pids($pid))"),
		"$db: the batch reaching row $held waits for the application transaction");
	# several lock timeouts (200 ms) and retries happen meanwhile
	sleep 3;
	my $mid = bstate($db);
	ok($mid->{last_key_n} < $held && !$mid->{finished},
		"$db: checkpoint ($mid->{last_key}) has not passed the held row $held");
	concurrent_writes($db, 6);
	$tx->query_safe('COMMIT');
	$tx->quit;
	my $err = wait_backfill($bg);
	close_bg($bg);
	finish_after_error($db, $err, 'backfill with lock timeouts');
	is(q1($db, "SELECT first_name FROM profiles WHERE user_id = $held"),
		'held', "$db: the held row's committed update is in profiles");
	check_complete($db);
	server_log_clean($db, $log_offset);
	q1('postgres', "DROP DATABASE $db");
}

# ------------------------------------------- a writer transaction vs. a batch
# An ordinary application transaction updates one user and then deletes
# another, both in the key range of the batch that is running: the batch
# waits for the updated row, the transaction's delete must not end in a
# deadlock (neither the application's statement nor the backfill may fail),
# and afterwards nothing is lost.
{
	my $db = 'cu_writer';
	note "==================== scenario writer transaction vs batch ====================";
	my $log_offset = -s $node->logfile;
	setup_db($db);
	my ($upd, $del) = split /\|/, q1($db,
		"SELECT (SELECT id FROM users ORDER BY id OFFSET 500 LIMIT 1), (SELECT id FROM users ORDER BY id OFFSET 700 LIMIT 1)");
	my $tx = $node->background_psql($db, on_error_stop => 0);
	$tx->set_query_timer_restart;
	my $txpid = $tx->query_safe('SELECT pg_backend_pid()');
	$txpid =~ s/\s+//g;
	$tx->query_safe(
		"BEGIN; UPDATE users SET first_name = 'writer' WHERE id = $upd; "
		  . "UPDATE shadow_users SET first_name = 'writer' WHERE id = $upd;");
	my ($bg, $pid) = start_backfill($db, 0);
	ok( $node->poll_query_until(
			$db, "SELECT $txpid = ANY (pg_catalog.pg_blocking_pids($pid))"),
		"$db: the first batch waits for the writer's uncommitted row $upd");
	my ($out, $failed) = $tx->query(
		"DELETE FROM users WHERE id = $del; DELETE FROM shadow_users WHERE id = $del;");
	ok(!$failed, "$db: the writer's DELETE of row $del (same batch) succeeds")
	  or diag($tx->{stderr});
	$tx->{stderr} = '';
	($out, $failed) = $tx->query('COMMIT');
	ok(!$failed, "$db: the writer commits") or diag($tx->{stderr});
	$tx->quit;
	my $err = wait_backfill($bg);
	close_bg($bg);
	finish_after_error($db, $err, 'backfill racing the writer');
	is(q1($db, "SELECT count(*) FROM profiles WHERE user_id = $del"),
		'0', "$db: no profile for the deleted row $del");
	check_complete($db);
	server_log_clean($db, $log_offset);
	q1('postgres', "DROP DATABASE $db");
}

$node->stop;
done_testing();
