# 005_merge_crash.pl - a merge's backfill survives crashes while it matches
# people and while it re-points references, with application writes going on.
#
# One database, seed 004's shape at a few thousand rows (N = 1500, or
# CU_TAP_MERGE_ROWS); person p has the email p<p>@x.org:
#   core.customers         the surviving table (uuid keys): 800 anchors, p 1..800
#   legacy.customers       int keys 1..N, row g is p = g + 400 (the first 400
#                          are anchors' people; emails drifted in case, spaces)
#   legacy.ai_customers    varchar(36) keys (uuids as text), N rows, row g is
#                          p = g + 400 + N/2: half of them legacy people
#   legacy.conversations   N/2 rows whose customer_id (varchar, no FK) names an
#                          AI row, or nothing, or a key that does not exist
# merged on lower(btrim(email)) into core.customers, conversations re-pointed
# (new column customer_uuid). The streams: a01_target a02_legacy a03_ai (match
# keys), b01_target b02_legacy b03_ai (matching), c01_ref (references); the
# first four run at once, then CALL customer_unify.backfill('m', batch_size =>
# 100, sleep_ms => ...) runs in a background psql while another connection
# writes, in rounds: updates, email changes (a new person, an anchor's
# person), inserts (new people, people another source has, people of rows
# not matched yet), deletes, new and re-pointed conversations; every write
# also goes to a shadow copy of its table that knows nothing of the extension.
# Three interruptions, each once its stream has committed part of its work:
#   b02_legacy   SIGKILL of the postmaster and every server process
#   b03_ai       SIGKILL of the backend running the backfill (crash restart)
#   c01_ref      SIGKILL of the postmaster and every server process
# After each: state 'started', the streams before it finished, it not and
# with a checkpoint (at most a few batches behind what was seen committed),
# the ones after it not begun; every row of its table up to the checkpoint is
# in the crosswalk (b) or points at its AI row's person (c); no crosswalk row
# without its source row or twice; no merged row without members. Writes,
# then the backfill is resumed (with writes meanwhile) to the next
# interruption and at last to the end. Then:
#   state 'backfilled', every stream finished at its end key and over its rows
#   exactly once (rows_done); verify() all ok (state 'verified'); per source no
#   row missing from the crosswalk, none without its source row, none twice;
#   the anchors are the 800 rows the target had; one target row per person,
#   as many as distinct emails in the anchors and the sources now, each source
#   row in the person of its email; every row written is in the result; every
#   reference points at the person of the AI row it names (or nowhere), none
#   to an existing row left empty, the FK validated; the sources equal their
#   shadows; no server process died but by the test's SIGKILLs.
#
# A last scenario is TODO (a bug of the extension): source rows written after
# start but before the target's streams ran make merged rows that those
# streams adopt as anchors.
#
# The writes are single-statement transactions from one connection (a round
# of them in one psql run), on rows behind the running stream's checkpoint or
# several batches ahead of it, and on people that are no other person's: two
# uncommitted writes of one person, or a write of a row of the batch that
# matches it, are the races of the isolation spec merge_concurrent (whose
# notes list those that fail). A row's cluster only grows (a row whose email
# changes keeps its person unless it matches another), so email changes are
# made on rows alone in their person.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $NANCHOR = 800;
my $NSRC    = $ENV{CU_TAP_MERGE_ROWS} || 1500;
my $NCONV   = $NSRC / 2;
my $BATCH   = 100;
my @STREAMS = qw(a01_target a02_legacy a03_ai b01_target b02_legacy b03_ai c01_ref);
# what each write template's {S} becomes: the real table's schema, its shadow's
my %SHADOW = (legacy => 'shadow');

my $node = PostgreSQL::Test::Cluster->new('merge_crash');
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

# The backfill's streams: stream -> {rows_done, last_key, finished, begun}.
sub streams
{
	my ($db) = @_;
	my %s;
	for my $line (split /\n/, q1($db, q{
		SELECT b.stream, b.rows_done, coalesce(b.last_key, ''), b.finished_at IS NOT NULL,
		       b.last_key IS NOT NULL OR b.rows_done > 0
		  FROM customer_unify.backfill_state b JOIN customer_unify.migration m ON m.id = b.migration_id
		 WHERE m.name = 'm' ORDER BY b.stream}))
	{
		my ($stream, $rows, $lk, $fin, $begun) = split /\|/, $line, -1;
		$s{$stream} = { rows_done => $rows, last_key => $lk, finished => $fin eq 't', begun => $begun eq 't' };
	}
	return \%s;
}

sub state_of
{
	my ($db) = @_;
	return q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'});
}

sub setup_db
{
	my ($db) = @_;
	q1('postgres', "CREATE DATABASE $db");
	q1(
		$db, qq{
		CREATE EXTENSION customer_unify;
		CREATE SCHEMA core;
		CREATE SCHEMA legacy;
		CREATE SCHEMA shadow;
		CREATE TABLE core.customers (
		    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
		    first_name text,
		    last_name  text,
		    email      text,
		    phone      text,
		    updated_at timestamptz NOT NULL DEFAULT '2025-01-01');
		CREATE TABLE legacy.customers (
		    id             int PRIMARY KEY,
		    first_name     text,
		    last_name      text,
		    email          text,
		    phone          text,
		    loyalty_points int NOT NULL DEFAULT 0,
		    updated_at     timestamptz);
		CREATE TABLE legacy.ai_customers (id varchar(36) PRIMARY KEY, email text, name text, phone text);
		CREATE TABLE legacy.conversations (id bigint PRIMARY KEY, customer_id varchar(36), body text);
		-- person p has the email p<p>\@x.org: anchors are people 1..$NANCHOR,
		-- legacy row g is person g + $NANCHOR/2, AI row g person g + $NANCHOR/2 + $NSRC/2
		INSERT INTO core.customers (first_name, last_name, email, phone, updated_at)
		SELECT 'F' || p, 'L' || p, 'p' || p || '\@x.org', '+1555' || lpad(p::text, 7, '0'), timestamptz '2025-03-01'
		  FROM generate_series(1, $NANCHOR) p;
		INSERT INTO legacy.customers
		SELECT g, 'LF' || p, 'LL' || p,
		       CASE WHEN g % 3 = 0 THEN ' P' || p || '\@X.org ' ELSE 'p' || p || '\@x.org' END,
		       CASE WHEN g % 4 = 0 THEN NULL ELSE '(415) 555-' || lpad((g % 10000)::text, 4, '0') END,
		       g % 100, timestamptz '2024-01-01' + g * interval '1 hour'
		  FROM generate_series(1, $NSRC) g, LATERAL (SELECT g + $NANCHOR / 2 AS p) x;
		INSERT INTO legacy.ai_customers
		SELECT md5('ai' || g)::uuid::text, 'P' || p || '\@x.org', 'AF' || p || ' AL' || p, NULL
		  FROM generate_series(1, $NSRC) g, LATERAL (SELECT g + $NANCHOR / 2 + $NSRC / 2 AS p) x;
		INSERT INTO legacy.conversations
		SELECT g, CASE WHEN g % 10 = 0 THEN NULL WHEN g % 7 = 0 THEN 'nope-' || g ELSE md5('ai' || 2 * g)::uuid::text END,
		       'c' || g
		  FROM generate_series(1, $NCONV) g;
		-- the oracle: every write the test makes, without the extension
		CREATE TABLE shadow.customers (LIKE legacy.customers INCLUDING ALL);
		CREATE TABLE shadow.ai_customers (LIKE legacy.ai_customers INCLUDING ALL);
		CREATE TABLE shadow.conversations (LIKE legacy.conversations INCLUDING ALL);
		INSERT INTO shadow.customers SELECT * FROM legacy.customers;
		INSERT INTO shadow.ai_customers SELECT * FROM legacy.ai_customers;
		INSERT INTO shadow.conversations SELECT * FROM legacy.conversations;
		CREATE TABLE shadow.anchors AS SELECT id, email FROM core.customers;
		-- the source rows the test wrote (must all be in the result)
		CREATE TABLE shadow.written (tag text, key text, what text, PRIMARY KEY (tag, key, what));
		-- (what = 'del': deleted)
		VACUUM ANALYZE;
	});
	my $id = q1(
		$db, q{
		SELECT customer_unify.merge('m', $j$ {
		  "target": {"table": "core.customers"},
		  "sources": [
		    {"table": "legacy.customers", "tag": "legacy", "priority": 1,
		     "columns": {"first_name": "first_name", "last_name": "last_name", "email": "lower(btrim(email))",
		                 "phone": "phone", "updated_at": "updated_at"}},
		    {"table": "legacy.ai_customers", "tag": "ai", "priority": 2,
		     "columns": {"first_name": "split_part(name, ' ', 1)", "last_name": "nullif(split_part(name, ' ', 2), '')",
		                 "email": "lower(email)", "phone": "phone"}}],
		  "match": [{"rule": "email", "key": "lower(btrim(email))"}],
		  "survivorship": {"default": "priority", "columns": {"updated_at": "newest:updated_at"}},
		  "references": [{"table": "legacy.conversations", "column": "customer_id", "source": "ai",
		                  "new_column": "customer_uuid", "unresolved": "allow"}]
		} $j$::jsonb)});
	like($id, qr/^\d+$/, "$db: merge() returns a migration id");
	is(q1($db, q{SELECT customer_unify.start('m')}), 'started', "$db: start() returns 'started'");
	my $st = streams($db);
	is(join(',', sort keys %$st), join(',', @STREAMS), "$db: the backfill has the streams " . join(' ', @STREAMS));
	ok(!(grep { $_->{begun} } values %$st), "$db: no stream has begun");
	is( q1($db, q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'customer\_unify\_%\_merge\_%' AND tgenabled = 'A'}),
		'9', "$db: capture triggers (insert, update, delete) on both sources and the target, ENABLE ALWAYS");
	return;
}

# Application writes, each its own transaction that runs the same
# statements on the real table and on its shadow copy ({S} is the schema:
# legacy / shadow) and records [tag, key, what] as written; all of them in one
# psql run, so that a round of writes is over in a moment. A failing
# application write is a failure; the writes from the failing one on are
# retried like an application would, so that the later checks still run.
sub writes
{
	my ($db, @w) = @_;
	my $from = 0;
	for my $try (1 .. 5)
	{
		my $sql = '';
		for my $i ($from .. $#w)
		{
			my ($mark, @stmts) = @{ $w[$i] };
			$sql .= "BEGIN;\n";
			for my $st (@stmts)
			{
				for my $schema ('legacy', 'shadow')
				{
					(my $x = $st) =~ s/\{S\}/$schema/g;
					$sql .= "$x;\n";
				}
			}
			$sql .= "INSERT INTO shadow.written VALUES ($mark) ON CONFLICT DO NOTHING;\n" if $mark;
			$sql .= "COMMIT;\n\\echo write_done $i\n";
		}
		my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 1);
		return if $rc == 0;
		my @done = $out =~ /write_done (\d+)/g;
		my $failed = @done ? $done[-1] + 1 : $from;
		fail("$db: application write failed (try $try): $err");
		diag(join("\n", @{ $w[$failed] }));
		$from = $failed;
	}
	die "$db: application writes failed 5 times";
}

# Keys of a source $offset rows (that satisfy $cond) behind ('<') or ahead
# ('>') of a checkpoint, in the source's own key order as the backfill walks
# it; $n of them.
sub keys_near
{
	my ($db, $table, $cmp, $lk, $offset, $n, $cond) = @_;
	my $order = $cmp eq '<' ? 'DESC' : 'ASC';
	my @where;
	push @where, "s.id $cmp " . ($table eq 'legacy.ai_customers' ? "'$lk'" : $lk) if defined $lk && $lk ne '';
	push @where, $cond if $cond;
	my $where = @where ? 'WHERE ' . join(' AND ', @where) : '';
	my $r = q1($db, "SELECT string_agg(id::text, ',') FROM (SELECT s.id FROM $table s $where ORDER BY s.id $order OFFSET $offset LIMIT $n) x");
	return split /,/, $r;
}

# Conditions on a source row s: no anchor and no other row of its source has
# its email; and no row of the other source has it either.
my $LONE_L = q{NOT EXISTS (SELECT 1 FROM shadow.anchors x WHERE lower(btrim(x.email)) = lower(btrim(s.email)))
  AND NOT EXISTS (SELECT 1 FROM legacy.customers x WHERE x.id <> s.id AND lower(btrim(x.email)) = lower(btrim(s.email)))};
my $ALONE_L = $LONE_L . q{
  AND NOT EXISTS (SELECT 1 FROM legacy.ai_customers x WHERE lower(btrim(x.email)) = lower(btrim(s.email)))};
my $ALONE_A = q{NOT EXISTS (SELECT 1 FROM shadow.anchors x WHERE lower(btrim(x.email)) = lower(btrim(s.email)))
  AND NOT EXISTS (SELECT 1 FROM legacy.ai_customers x WHERE x.id <> s.id AND lower(btrim(x.email)) = lower(btrim(s.email)))
  AND NOT EXISTS (SELECT 1 FROM legacy.customers x WHERE lower(btrim(x.email)) = lower(btrim(s.email)))};

# The email of a source row (as stored).
sub email_of
{
	my ($db, $table, $key) = @_;
	return q1($db, "SELECT email FROM $table WHERE id = '$key'");
}

my $NEWID = 100_000;    # legacy keys for inserts, beyond the copy's end
# rows ahead of a running stream's checkpoint: beyond the batch running and
# the few batches that run while a round of writes is made (the matching
# streams run at most a few batches a second with the sleep_ms used below;
# the re-pointing stream about one)
my $AHEAD = 5 * $BATCH;
my $AHEAD_REF = 3 * $BATCH;

# One round of writes around the checkpoint of $stream: rows behind it
# (matched, or re-pointed, and committed) and rows ahead of it, at least
# $AHEAD rows when the backfill is $running (it is paced, sleep_ms, so that
# it does not reach them while the round is written, a moment).
sub concurrent_writes
{
	my ($db, $round, $stream, $running) = @_;
	my $lk = streams($db)->{$stream}{last_key};
	my $r = $round;
	my $ahead = $running ? $AHEAD : $BATCH;
	my $ahead_ref = $running ? $AHEAD_REF : $BATCH;
	my @w;

	my $lcmp = $stream eq 'b02_legacy' ? $lk : undef;
	my $acmp = $stream eq 'b03_ai' ? $lk : undef;
	# A row's cluster only grows: a row whose email changes keeps its person
	# unless it now matches another one, and a row that joins another person
	# brings the rest of its old person along. So the rows whose email changes
	# are alone in their person (when matched): no anchor, no other row of
	# their source, and (once the AI rows are being matched) no AI row with
	# their email. Legacy rows behind the checkpoint (matched) and ahead (not
	# yet, in b02); AI rows behind and ahead (in b02 none is matched yet).
	my @lb = defined $lcmp ? keys_near($db, 'legacy.customers', '<', $lcmp, 3 * $r, 4, $LONE_L)
	  : keys_near($db, 'legacy.customers', '<', undef, 5 * $r, 4, $ALONE_L);
	my @la = defined $lcmp ? keys_near($db, 'legacy.customers', '>', $lcmp, $ahead + 2 * $r, 2)
	  : keys_near($db, 'legacy.customers', '<', undef, 5 * $r + 60, 2, $ALONE_L);
	my @ab = defined $acmp ? keys_near($db, 'legacy.ai_customers', '<', $acmp, 3 * $r, 3, $ALONE_A)
	  : keys_near($db, 'legacy.ai_customers', '>', undef, 5 * $r, 3, $ALONE_A);
	my @aa = defined $acmp ? keys_near($db, 'legacy.ai_customers', '>', $acmp, $ahead + 2 * $r, 3)
	  : keys_near($db, 'legacy.ai_customers', '>', undef, 5 * $r + 60, 3);
	if (@lb < 4 || @la < 2 || @ab < 3 || @aa < 3)
	{
		fail("$db: round $r: rows to write around the checkpoint of $stream ($lk)");
		return;
	}
	my $anchor = 'p' . (7 * $r + 1) . '@x.org';    # anchors of no source row
	my $anchor2 = 'P' . (7 * $r + 2) . '@X.org';
	my $em_l = email_of($db, 'legacy.customers', $lb[3]);
	my $em_l0 = email_of($db, 'legacy.customers', $lb[0]);
	my $em_a = email_of($db, 'legacy.ai_customers', $aa[0]);
	my $unref = q1($db, "SELECT a.id FROM legacy.ai_customers a WHERE NOT EXISTS (SELECT 1 FROM legacy.conversations c "
		  . "WHERE c.customer_id = a.id) AND a.id NOT IN ('" . join("', '", @ab, @aa) . "') "
		  . "ORDER BY a.id OFFSET $r * 3 LIMIT 1");
	my $cmax = q1($db, 'SELECT max(id) FROM shadow.conversations WHERE id < 10000000');
	my ($k1, $k2, $k3) = ($NEWID + 1, $NEWID + 2, $NEWID + 3);
	$NEWID += 10;
	# (new AI keys sort after every key there was before: beyond the end keys)
	my ($a1, $a2) = map { sprintf('zz-%02d-%s-%d', $r, $stream, $_) } 1, 2;
	my ($c1, $c2, $c3) = ($cmax + 1, $cmax + 2, $cmax + 3);

	# rows ahead first: a legacy row takes an anchor's email (it joins the
	# anchor), an AI row is renamed
	push @w, ["'legacy', '$la[0]', 'anchor$r'", "UPDATE {S}.customers SET email = ' " . uc($anchor) . "' WHERE id = $la[0]"];
	push @w, ["'ai', '$aa[1]', 'name$r'", "UPDATE {S}.ai_customers SET name = 'Renamed$r Ai' WHERE id = '$aa[1]'"];
	# matched rows: a new name (the person is recomputed), a new email (a
	# new person), a delete
	push @w, ["'legacy', '$lb[0]', 'upd$r'",
		"UPDATE {S}.customers SET first_name = 'upd$r', updated_at = timestamptz '2026-01-01' WHERE id = $lb[0]"];
	push @w, ["'legacy', '$lb[1]', 'new$r'", "UPDATE {S}.customers SET email = 'new-l$r-$stream\@x.org' WHERE id = $lb[1]"];
	push @w, ["'legacy', '$lb[2]', 'del'", "DELETE FROM {S}.customers WHERE id = $lb[2]"];
	# new legacy rows beyond the copy's end: a new person, a person with a
	# legacy row (behind), the person of an AI row (ahead: matched later)
	push @w, ["'legacy', '$k1', 'ins$r'",
		"INSERT INTO {S}.customers (id, first_name, last_name, email) VALUES ($k1, 'Ins$r', 'New', 'ins-l$r-$stream\@x.org')"];
	push @w, ["'legacy', '$k2', 'ins$r'", "INSERT INTO {S}.customers (id, first_name, email) VALUES ($k2, 'Twin$r', upper('$em_l'))"];
	push @w, ["'legacy', '$k3', 'ins$r'",
		"INSERT INTO {S}.customers (id, first_name, email, loyalty_points) VALUES ($k3, 'Ai$r', '$em_a', 9)"];
	# AI rows: one behind takes an anchor's email, an unreferenced one is
	# deleted, new ones: the person of a legacy row (behind), a new person
	push @w, ["'ai', '$ab[0]', 'anchor$r'", "UPDATE {S}.ai_customers SET email = '$anchor2' WHERE id = '$ab[0]'"];
	push @w, ["'ai', '$unref', 'del'", "DELETE FROM {S}.ai_customers WHERE id = '$unref'"] if $unref ne '';
	push @w, ["'ai', '$a1', 'ins$r'", "INSERT INTO {S}.ai_customers VALUES ('$a1', '$em_l0', 'Inserted$r Twin', '+14155550000')"];
	push @w, ["'ai', '$a2', 'ins$r'", "INSERT INTO {S}.ai_customers VALUES ('$a2', 'ins-a$r-$stream\@x.org', 'Inserted$r New', NULL)"];
	# references: new conversations of AI rows behind, ahead and new
	push @w, ["'conv', '$c1', 'ins$r'", "INSERT INTO {S}.conversations VALUES ($c1, '$ab[1]', 'new behind')"];
	push @w, ["'conv', '$c2', 'ins$r'", "INSERT INTO {S}.conversations VALUES ($c2, '$aa[2]', 'new ahead')"];
	push @w, ["'conv', '$c3', 'ins$r'", "INSERT INTO {S}.conversations VALUES ($c3, '$a1', 'new of a new row')"];

	if ($stream eq 'c01_ref')
	{
		# references behind the checkpoint and ahead of it re-pointed or
		# deleted, one beyond the copy's end key
		my $lkc = $lk eq '' ? 0 : $lk;
		my @cb = keys_near($db, 'legacy.conversations', '<', $lkc + 1, 3 * $r, 2);
		my @ca = keys_near($db, 'legacy.conversations', '>', $lkc, $ahead_ref + 2 * $r, 2);
		my @ai = keys_near($db, 'legacy.ai_customers', '>', undef, 100 + 5 * $r, 2);
		if (@cb == 2 && @ca == 2 && @ai == 2)
		{
			my $beyond = 10_000_000 + $r * 100_000 + $cb[0];
			unshift @w, ["'conv', '$ca[0]', 'repoint$r'", "UPDATE {S}.conversations SET customer_id = '$ai[1]' WHERE id = $ca[0]"],
			  ["'conv', '$ca[1]', 'del'", "DELETE FROM {S}.conversations WHERE id = $ca[1]"];
			push @w, ["'conv', '$cb[0]', 'repoint$r'", "UPDATE {S}.conversations SET customer_id = '$ai[0]' WHERE id = $cb[0]"],
			  ["'conv', '$cb[1]', 'del'", "DELETE FROM {S}.conversations WHERE id = $cb[1]"],
			  ["'conv', '$beyond', 'ins$r'", "INSERT INTO {S}.conversations VALUES ($beyond, '$ai[0]', 'beyond the end')"];
		}
		else
		{
			fail("$db: round $r: references to write around the checkpoint of $stream ($lk)");
		}
	}
	writes($db, @w);
	note "$db: round $r: " . scalar(@w) . " writes around $stream at $lk";
	return;
}

# Start CALL backfill in a background psql; returns (session, backend pid).
sub start_backfill
{
	my ($db, $sleep_ms) = @_;
	my $bg = $node->background_psql($db, on_error_stop => 0);
	$bg->set_query_timer_restart;
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	$bg->query_until(qr/backfill_starting/,
		    "\\echo backfill_starting\n"
		  . "CALL customer_unify.backfill('m', batch_size => $BATCH, sleep_ms => $sleep_ms, lock_timeout_ms => 10000);\n"
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

# Wait until $stream has committed more than $min rows (and is not finished).
sub wait_stream
{
	my ($db, $stream, $min, $pid) = @_;
	my $ok = $node->poll_query_until(
		$db, qq{
		SELECT b.rows_done > $min OR b.finished_at IS NOT NULL
		       OR NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $pid)
		  FROM customer_unify.backfill_state b
		  JOIN customer_unify.migration m ON m.id = b.migration_id
		 WHERE m.name = 'm' AND b.stream = '$stream'});
	my $st = streams($db)->{$stream};
	ok($ok && $st->{rows_done} > $min && !$st->{finished},
		"$db: $stream in progress (rows_done $st->{rows_done} > $min, not finished)");
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

# kill9: SIGKILL of the postmaster and every server process (power loss);
# backend: SIGKILL of the backend running the backfill (crash restart).
sub crash
{
	my ($how, $db, $bg, $pid) = @_;
	if ($how eq 'kill9')
	{
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
		# an unreaped zombie postmaster leaves lock files that look live
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
		my $re = qr/terminated by signal 9: Killed.*all server processes terminated; reinitializing.*database system is ready to accept connections/s;
		ok(eval { $node->wait_for_log($re, $off); 1 },
			"$db: postmaster saw the backend killed, reinitialized and is ready");
		wait_server_up($db);
	}
	else
	{
		die "unknown crash $how";
	}
	return;
}

# ------------------------------------------------------------------ checks

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

# The crosswalk against every source: rows missing, crosswalk rows whose
# source row is gone, keys mapped twice.
my %SRC = (target => ['core.customers', 'uuid'], legacy => ['legacy.customers', 'int'],
		   ai => ['legacy.ai_customers', 'varchar']);

sub crosswalk_counts
{
	my ($db, $tag, $upto) = @_;
	my ($table) = @{ $SRC{$tag} };
	my $lim = defined $upto ? "AND s.id <= '$upto'" : '';
	my $anchor = $tag eq 'target' ? 'AND s.id IN (SELECT id FROM shadow.anchors)' : '';
	return split /\|/, q1(
		$db, qq{
		SELECT (SELECT count(*) FROM ONLY $table s WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im
		          WHERE im.source_tag = '$tag' AND im.old_key = s.id::text) $lim $anchor),
		       (SELECT count(*) FROM customer_unify.id_map im WHERE im.source_tag = '$tag'
		           AND NOT EXISTS (SELECT 1 FROM ONLY $table s WHERE s.id::text = im.old_key)),
		       (SELECT count(*) - count(DISTINCT old_key) FROM customer_unify.id_map WHERE source_tag = '$tag')});
}

# Merged rows of the target without members, crosswalk rows whose target row is missing.
sub orphans
{
	my ($db) = @_;
	return split /\|/, q1(
		$db, q{
		SELECT (SELECT count(*) FROM core.customers t WHERE NOT EXISTS (SELECT 1 FROM customer_unify.id_map im
		          WHERE im.target_key = t.id::text)
		          AND t.id NOT IN (SELECT id FROM shadow.anchors)),
		       (SELECT count(DISTINCT im.target_key) FROM customer_unify.id_map im
		         WHERE NOT EXISTS (SELECT 1 FROM core.customers t WHERE t.id::text = im.target_key)
		           AND NOT EXISTS (SELECT 1 FROM customer_unify.merge_held h WHERE h.target_key = im.target_key))});
}

# References up to $upto (or all) whose new column is not their AI row's person.
sub refs_wrong
{
	my ($db, $upto) = @_;
	my $lim = defined $upto ? "AND c.id <= $upto" : '';
	return q1(
		$db, qq{
		SELECT count(*) FROM legacy.conversations c
		  LEFT JOIN customer_unify.id_map im ON im.source_tag = 'ai' AND im.old_key = c.customer_id
		 WHERE c.customer_uuid IS DISTINCT FROM im.target_key::uuid $lim});
}

# At the checkpoint of the interrupted stream.
sub check_checkpoint
{
	my ($db, $stream, $seen) = @_;
	my $st = streams($db);
	is(state_of($db), 'started', "$db: state still 'started' after the crash in $stream");
	my @before = grep { $_ lt $stream } @STREAMS;
	my @after = grep { $_ gt $stream } @STREAMS;
	is(join(',', grep { !$st->{$_}{finished} } @before), '', "$db: the streams before $stream are finished");
	my $cur = $st->{$stream};
	ok(!$cur->{finished} && $cur->{rows_done} > 0 && $cur->{last_key} ne '',
		"$db: $stream has a checkpoint and is not finished (rows_done $cur->{rows_done}, last key $cur->{last_key})");
	# batches commit asynchronously: the crash may take back the last few,
	# batch and checkpoint together, never more
	ok($cur->{rows_done} <= $seen->{rows_done} + 20 * $BATCH,
		"$db: $stream checkpoint plausible after the crash ($cur->{rows_done}, seen $seen->{rows_done})");
	is(join(',', grep { $st->{$_}{rows_done} > 0 || $st->{$_}{finished} } @after), '',
		"$db: the streams after $stream have not begun");
	if ($stream =~ /^b\d\d_(\w+)$/)
	{
		my ($missing) = crosswalk_counts($db, $1, $cur->{last_key});
		is($missing, '0', "$db: every $1 row up to the checkpoint ($cur->{last_key}) is in the crosswalk");
	}
	else
	{
		is(refs_wrong($db, $cur->{last_key}), '0',
			"$db: every reference up to the checkpoint ($cur->{last_key}) points at its AI row's person");
	}
	for my $tag (qw(target legacy ai))
	{
		my (undef, $gone, $dup) = crosswalk_counts($db, $tag);
		is("$gone/$dup", '0/0', "$db: at the checkpoint no $tag crosswalk row without its source row, none twice");
	}
	my ($orph, $lost) = orphans($db);
	is("$orph/$lost", '0/0', "$db: at the checkpoint no merged row without members, no cluster without its row");
	return;
}

sub check_complete
{
	my ($db) = @_;
	my $st = streams($db);
	is(state_of($db), 'backfilled', "$db: state 'backfilled' after the resumed backfill");
	is(join(',', grep { !$st->{$_}{finished} } @STREAMS), '', "$db: every stream finished");
	is( q1($db, q{SELECT count(*) FROM customer_unify.backfill_state b WHERE b.last_key IS DISTINCT FROM b.end_key
		           OR b.position IS DISTINCT FROM b.end_position}),
		'0', "$db: every stream's checkpoint is at its end key");
	# each stream went over its rows once, however often it was resumed: its
	# rows_done is at least the rows of its range now (nothing was inserted
	# into a range: new keys are beyond the end keys) and at most that plus
	# the rows the test deleted from its table
	for my $x (['a01_target', 'target', 'shadow.anchors'], ['b01_target', 'target', 'shadow.anchors'],
		['a02_legacy', 'legacy', 'legacy.customers'], ['b02_legacy', 'legacy', 'legacy.customers'],
		['a03_ai', 'ai', 'legacy.ai_customers'], ['b03_ai', 'ai', 'legacy.ai_customers'],
		['c01_ref', 'conv', 'legacy.conversations'])
	{
		my ($stream, $tag, $table) = @$x;
		my $r = q1(
			$db, qq{
			SELECT b.rows_done, (SELECT count(*) FROM $table s WHERE s.id <= b.end_key::@{[ $table =~ /ai_/ ? 'text' : $table =~ /anchors/ ? 'uuid' : 'bigint' ]}),
			       (SELECT count(*) FROM shadow.written w WHERE w.tag = '$tag' AND w.what = 'del')
			  FROM customer_unify.backfill_state b WHERE b.stream = '$stream'});
		my ($done, $now, $del) = split /\|/, $r;
		ok($done >= $now && $done <= $now + $del,
			"$db: $stream went over its rows once (rows_done $done, $now rows in its range now, $del deleted)");
	}

	my $ver = q1($db, q{SELECT count(*) || '/' || count(*) FILTER (WHERE ok) FROM customer_unify.verify('m')});
	my ($n, $nok) = split m{/}, $ver;
	ok($n > 0 && $n == $nok, "$db: verify() all ok ($nok of $n checks)")
	  or diag(q1($db, q{SELECT * FROM customer_unify.verify('m') WHERE ok IS NOT TRUE}));
	is(state_of($db), 'verified', "$db: state 'verified' after verify()");

	for my $tag (qw(target legacy ai))
	{
		my ($missing, $gone, $dup) = crosswalk_counts($db, $tag);
		is($missing, '0', "$db: no $tag row missing from the crosswalk");
		is($gone, '0', "$db: no $tag crosswalk row without its source row");
		is($dup, '0', "$db: no $tag row twice in the crosswalk");
	}
	is( q1($db, q{SELECT (SELECT count(*) FROM customer_unify.id_map WHERE source_tag = 'target') || '/' ||
		                 (SELECT count(*) FROM customer_unify.id_map WHERE source_tag = 'target'
		                     AND old_key IN (SELECT id::text FROM shadow.anchors))}),
		"$NANCHOR/$NANCHOR", "$db: the anchors are the $NANCHOR rows the target had, no merged row became one");
	my ($orph, $lost) = orphans($db);
	is("$orph/$lost", '0/0', "$db: no merged row without members, no cluster without its target row");

	# people: one target row per distinct email of the anchors and the sources
	my $people = q1(
		$db, q{
		SELECT count(DISTINCT e) FROM (
		  SELECT lower(btrim(email)) FROM shadow.anchors UNION ALL
		  SELECT lower(btrim(email)) FROM shadow.customers UNION ALL
		  SELECT lower(btrim(email)) FROM shadow.ai_customers) x(e) WHERE e IS NOT NULL AND e <> ''});
	is(q1($db, 'SELECT count(*) FROM core.customers'), $people,
		"$db: as many target rows as people ($people distinct emails)");
	is(q1($db, 'SELECT count(*) FROM (SELECT email FROM core.customers GROUP BY email HAVING count(*) > 1) d'),
		'0', "$db: no person has two target rows");
	is(q1($db, q{SELECT count(DISTINCT target_key) FROM customer_unify.id_map}), $people,
		"$db: the crosswalk has $people people");
	# each source row's person has its email (and so every write landed)
	for my $x (['legacy', 'legacy.customers'], ['ai', 'legacy.ai_customers'])
	{
		my ($tag, $table) = @$x;
		is( q1(
				$db, qq{
			SELECT count(*) FROM $table s
			  JOIN customer_unify.id_map im ON im.source_tag = '$tag' AND im.old_key = s.id::text
			  JOIN core.customers t ON t.id::text = im.target_key
			 WHERE t.email IS DISTINCT FROM lower(btrim(s.email))}),
			'0', "$db: every $tag row belongs to the person of its email")
		  or diag(q1($db, qq{
			SELECT s.id, s.email, t.email, im.rule FROM $table s
			  JOIN customer_unify.id_map im ON im.source_tag = '$tag' AND im.old_key = s.id::text
			  JOIN core.customers t ON t.id::text = im.target_key
			 WHERE t.email IS DISTINCT FROM lower(btrim(s.email)) LIMIT 10}));
	}
	my $w = q1(
		$db, q{
		SELECT count(*) || '/' || count(*) FILTER (WHERE CASE w.tag
		         WHEN 'conv' THEN EXISTS (SELECT 1 FROM legacy.conversations c WHERE c.id::text = w.key)
		         ELSE EXISTS (SELECT 1 FROM customer_unify.id_map im WHERE im.source_tag = w.tag AND im.old_key = w.key) END)
		  FROM shadow.written w
		 WHERE CASE w.tag WHEN 'legacy' THEN EXISTS (SELECT 1 FROM shadow.customers s WHERE s.id::text = w.key)
		                  WHEN 'ai' THEN EXISTS (SELECT 1 FROM shadow.ai_customers s WHERE s.id = w.key)
		                  ELSE EXISTS (SELECT 1 FROM shadow.conversations s WHERE s.id::text = w.key) END});
	my ($wn, $wok) = split m{/}, $w;
	ok($wn > 20 && $wn == $wok, "$db: every row written during the backfill is in the result ($wok of $wn)");

	# references
	is(refs_wrong($db), '0', "$db: every reference points at the person of the AI row it names (or nowhere)");
	is( q1($db, q{SELECT count(*) FROM legacy.conversations c WHERE c.customer_uuid IS NULL
		           AND EXISTS (SELECT 1 FROM legacy.ai_customers a WHERE a.id = c.customer_id)}),
		'0', "$db: no reference to an existing AI row is left empty");
	is( q1($db, q{SELECT convalidated FROM pg_constraint WHERE conrelid = 'legacy.conversations'::regclass AND contype = 'f'}),
		't', "$db: the reference's foreign key to the target is validated");

	# nothing lost in the sources: they equal the shadow copies
	for my $x (['customers', '*'], ['ai_customers', '*'], ['conversations', 'id, customer_id, body'])
	{
		my ($t, $cols) = @$x;
		is( q1(
				$db, qq{
			SELECT count(*) FROM ((SELECT $cols FROM legacy.$t EXCEPT ALL SELECT $cols FROM shadow.$t)
			                      UNION ALL (SELECT $cols FROM shadow.$t EXCEPT ALL SELECT $cols FROM legacy.$t)) d}),
			'0', "$db: legacy.$t equals its shadow copy (no write lost or altered)")
		  or diag(q1($db, qq{
			(SELECT 'source', $cols FROM legacy.$t EXCEPT ALL SELECT 'source', $cols FROM shadow.$t)
			UNION ALL (SELECT 'shadow', $cols FROM shadow.$t EXCEPT ALL SELECT 'shadow', $cols FROM legacy.$t) LIMIT 20}));
	}
	return;
}

# The backfill call must succeed; if it failed anyway (a bug, reported by the
# failed assertion), finish it without writes so that the data checks still say
# whether anything was lost.
sub finish_after_error
{
	my ($db, $err, $what) = @_;
	return if unlike($err // '', qr/ERROR|FATAL/, "$db: $what completed without error");
	diag($err);
	my ($rc, $out, $stderr) = $node->psql($db, "CALL customer_unify.backfill('m', batch_size => $BATCH)");
	diag("re-running the backfill to completion: rc=$rc $stderr");
	return;
}

# ------------------------------------------------------------------ the crashes

{
	my $db = 'cu_merge';
	note "==================== crashes during matching and re-pointing ====================";
	my $log_offset = -s $node->logfile;
	setup_db($db);

	# the key pass and the target's own rows, at full speed: a01_target
	# a02_legacy a03_ai b01_target are one batch per 100 rows
	my $first = 0;
	$first += int(($_ + $BATCH - 1) / $BATCH) for ($NANCHOR, $NSRC, $NSRC, $NANCHOR);
	q1($db, "CALL customer_unify.backfill('m', batch_size => $BATCH, max_batches => $first)");
	my $st = streams($db);
	is(join(',', grep { $st->{$_}{finished} } @STREAMS), 'a01_target,a02_legacy,a03_ai,b01_target',
		"$db: the key pass and the target's stream ran first");

	# 1. matching legacy rows: the whole server is killed
	my ($bg, $pid) = start_backfill($db, 300);
	# (once legacy rows that are not anchors' people are behind the checkpoint)
	my $seen = wait_stream($db, 'b02_legacy', $NANCHOR / 2 + 2 * $BATCH, $pid);
	concurrent_writes($db, 1, 'b02_legacy', 1);
	$seen = wait_stream($db, 'b02_legacy', $seen->{rows_done} + $BATCH, $pid);
	concurrent_writes($db, 2, 'b02_legacy', 1);
	$seen = wait_stream($db, 'b02_legacy', $seen->{rows_done}, $pid);
	crash('kill9', $db, $bg, $pid);
	check_checkpoint($db, 'b02_legacy', $seen);
	concurrent_writes($db, 3, 'b02_legacy', 0);

	# 2. matching AI rows (folding them into legacy people): the backend is killed
	($bg, $pid) = start_backfill($db, 200);
	$seen = wait_stream($db, 'b03_ai', 2 * $BATCH, $pid);
	concurrent_writes($db, 4, 'b03_ai', 1);
	$seen = wait_stream($db, 'b03_ai', $seen->{rows_done} + 2 * $BATCH, $pid);
	concurrent_writes($db, 5, 'b03_ai', 1);
	$seen = wait_stream($db, 'b03_ai', $seen->{rows_done}, $pid);
	crash('backend', $db, $bg, $pid);
	check_checkpoint($db, 'b03_ai', $seen);
	concurrent_writes($db, 6, 'b03_ai', 0);

	# 3. re-pointing the references: the whole server is killed
	($bg, $pid) = start_backfill($db, 300);
	concurrent_writes($db, 7, 'b03_ai', 1);
	$seen = wait_stream($db, 'c01_ref', $BATCH, $pid);
	concurrent_writes($db, 8, 'c01_ref', 1);
	$seen = wait_stream($db, 'c01_ref', $seen->{rows_done}, $pid);
	crash('kill9', $db, $bg, $pid);
	check_checkpoint($db, 'c01_ref', $seen);
	concurrent_writes($db, 9, 'c01_ref', 0);

	# resume to the end, with writes meanwhile
	($bg, $pid) = start_backfill($db, 300);
	concurrent_writes($db, 10, 'c01_ref', 1);
	my $err = wait_backfill($bg);
	close_bg($bg);
	finish_after_error($db, $err, 'resumed backfill');
	check_complete($db);

	# a second CALL on a finished backfill is harmless
	my ($rc, $out, $stderr) = $node->psql($db,
		"\\set VERBOSITY sqlstate\nCALL customer_unify.backfill('m', batch_size => $BATCH)");
	ok($rc == 0 || $stderr =~ /55000/, "$db: backfill after completion is a no-op or fails with 55000")
	  or diag("rc=$rc stderr=$stderr");
	is(q1($db, q{SELECT count(*) FILTER (WHERE NOT ok) FROM customer_unify.verify('m')}),
		'0', "$db: verify() still all ok after a repeated backfill call");
	server_log_clean($db, $log_offset);
	q1('postgres', "DROP DATABASE $db");
}

# ------------------------------------------- writes before the target's streams
# Source rows written after start, before the backfill's target streams
# (a01_target, b01_target) have passed the key of the merged row they make:
# those streams take the merged row for one of the target's own rows and make
# it an anchor of itself. A new person's row is then frozen (survivorship no
# longer recomputes it) and rollback leaves it in the target; a row of an
# anchor's person leaves a crosswalk anchor whose target row is gone, and
# verify() fails.
{
	my $db = 'cu_early';
	note "==================== writes before the target's streams ====================";
	q1('postgres', "CREATE DATABASE $db");
	q1(
		$db, q{
		CREATE EXTENSION customer_unify;
		CREATE SCHEMA core;
		CREATE SCHEMA legacy;
		CREATE TABLE core.customers (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text, name text);
		CREATE TABLE legacy.customers (id int PRIMARY KEY, email text, name text);
		INSERT INTO core.customers VALUES ('00000000-0000-0000-0000-000000000001', 'ana@x.org', 'Ana');
		INSERT INTO legacy.customers VALUES (1, 'ana@x.org', 'Ana L'), (2, 'bo@x.org', 'Bo');
		SELECT customer_unify.merge('m', '{"target": {"table": "core.customers"},
		  "sources": [{"table": "legacy.customers", "tag": "legacy", "columns": {"email": "lower(email)", "name": "name"}}],
		  "match": [{"rule": "email", "key": "lower(btrim(email))"}]}');
		SELECT customer_unify.start('m');
		-- a new person, and a second row of the anchor's person
		INSERT INTO legacy.customers VALUES (3, 'pat@x.org', 'Pat'), (4, ' ANA@x.org', 'Ana again');
		CALL customer_unify.backfill('m', batch_size => 10);
	});
	is(state_of($db), 'backfilled', "$db: backfilled");
	TODO:
	{
		local $TODO = 'bug: a merged row made by a live write before the target streams ran is adopted as an anchor';
		is(q1($db, q{SELECT count(*) FILTER (WHERE NOT ok) FROM customer_unify.verify('m')}), '0',
			"$db: verify() all ok");
		is(q1($db, q{SELECT count(*) FROM customer_unify.id_map WHERE source_tag = 'target'}),
			'1', "$db: the target's one row is the only anchor");
		q1($db, q{UPDATE legacy.customers SET name = 'Pat Renamed' WHERE id = 3});
		is(q1($db, q{SELECT name FROM core.customers WHERE email = 'pat@x.org'}),
			'Pat Renamed', "$db: a later write of the source row reaches its person");
		q1($db, q{SELECT customer_unify.rollback('m')});
		is(q1($db, 'SELECT count(*) FROM core.customers'), '1',
			"$db: rollback leaves the target with its own row only");
	}
	q1('postgres', "DROP DATABASE $db");
}

$node->stop;
done_testing();
