# 007_rekey_crash.pl - a rekey survives crashes during its backfill and
# during its key swap (finalize).
#
# Each scenario gets a fresh database with seed 000's shape: users_user,
# users_customer (user_ptr_id PK -> users_user, ~30k rows), its history
# users_historicalcustomer and shop_order (-> users_customer.user_ptr_id).
#   backend    the backfill's backend is SIGKILLed mid-way (crash restart)
#   immediate  pg_ctl stop -m immediate mid-way, then start
# while both application shapes write; then the checkpoint is checked (state
# still 'started', every row up to the checkpoint filled and equal to its
# key, no row anywhere whose new columns disagree with its key), the
# backfill resumed to the end, the job builds the unique indexes, verify is
# all ok, cutover and finalize run, and every order finds its customer by
# the new key.
#   swap       finalize is crashed (SIGKILL of its backend) while it holds its
#              SHARE lock and waits for ACCESS EXCLUSIVE: after the restart
#              the migration is still cut_over with the old primary key, and
#              finalize run again completes the swap.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $NROWS = $ENV{CU_TAP_REKEY_ROWS} || 30_000;
my $BATCH = 500;

my $node = PostgreSQL::Test::Cluster->new('rekey_crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
restart_after_crash = on
max_connections = 40
max_worker_processes = 16
log_min_duration_statement = -1
log_line_prefix = '%m [%p] %q%d '
});
$node->start;

sub q1
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

sub setup_db
{
	my ($db) = @_;
	q1('postgres', "CREATE DATABASE $db");
	q1(
		$db, qq{
		CREATE EXTENSION customer_unify;
		CREATE TABLE users_user (id bigserial PRIMARY KEY, username text NOT NULL UNIQUE, email text NOT NULL DEFAULT '');
		CREATE TABLE users_customer (
		    user_ptr_id bigint PRIMARY KEY REFERENCES users_user (id) DEFERRABLE INITIALLY DEFERRED,
		    full_name   text NOT NULL DEFAULT '');
		CREATE TABLE users_historicalcustomer (history_id serial PRIMARY KEY, id bigint NOT NULL,
		    username text NOT NULL, email text NOT NULL, user_ptr_id bigint, full_name text NOT NULL,
		    history_type varchar(1) NOT NULL);
		CREATE TABLE shop_order (id bigserial PRIMARY KEY,
		    customer_id bigint NOT NULL REFERENCES users_customer (user_ptr_id) DEFERRABLE INITIALLY DEFERRED);
		INSERT INTO users_user (username) SELECT 'u' || g FROM generate_series(1, $NROWS + 1000) g;
		INSERT INTO users_customer SELECT g, 'c' || g FROM generate_series(1, $NROWS) g WHERE g % 7 <> 0;
		INSERT INTO users_historicalcustomer (id, username, email, user_ptr_id, full_name, history_type)
		SELECT c.user_ptr_id, u.username, u.email, c.user_ptr_id, c.full_name, '+'
		  FROM users_customer c JOIN users_user u ON u.id = c.user_ptr_id WHERE c.user_ptr_id % 3 = 0;
		INSERT INTO shop_order (customer_id) SELECT user_ptr_id FROM users_customer WHERE user_ptr_id % 2 = 0;
		SELECT customer_unify.rekey('m', 'users_customer', history => ARRAY['users_historicalcustomer'::regclass]);
		SELECT customer_unify.start('m');});
	return;
}

# Writes of both shapes: the new one names user_id, the old one user_ptr_id
# through the compatibility schema; $n picks users that have no customer.
sub app_writes
{
	my ($db, $n) = @_;
	my $v2 = $NROWS + $n;
	my $v1 = $NROWS + 500 + $n;
	q1(
		$db, qq{
		INSERT INTO users_customer (user_id, full_name) VALUES ($v2, 'v2');
		INSERT INTO shop_order (customer_id) VALUES ($v2);
		INSERT INTO users_historicalcustomer (id, user_id, full_name, history_type) VALUES ($v2, $v2, 'v2', '+');
		SET search_path = m_compat, public;
		INSERT INTO users_customer (user_ptr_id, full_name) VALUES ($v1, 'v1');
		UPDATE users_customer SET full_name = 'v1 touched' WHERE user_ptr_id = 7 * $n + 1;
		INSERT INTO shop_order (customer_id) VALUES ($v1);});
	return;
}

sub mismatched
{
	my ($db) = @_;
	return q1(
		$db, q{
		SELECT (SELECT count(*) FROM users_customer WHERE (id IS NOT NULL AND id <> user_ptr_id)
		                                            OR (user_id IS NOT NULL AND user_id <> user_ptr_id))
		     + (SELECT count(*) FROM users_historicalcustomer WHERE user_ptr_id IS NOT NULL
		          AND ((id IS NOT NULL AND id <> user_ptr_id) OR (user_id IS NOT NULL AND user_id <> user_ptr_id)))});
}

sub start_bg
{
	my ($db, $sql) = @_;
	my $bg = $node->background_psql($db, on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	$bg->query_until(qr/bg_starting/, "\\echo bg_starting\n$sql\n\\echo bg_returned\n");
	return ($bg, $pid);
}

sub close_bg
{
	my ($bg) = @_;
	eval { $bg->quit; 1 } or eval { $bg->{run}->kill_kill; 1 };
	return;
}

sub wait_server_up
{
	my ($db) = @_;
	ok($node->poll_query_until($db, 'SELECT NOT pg_is_in_recovery()'), "$db: server accepts connections again");
	return;
}

sub kill_backend
{
	my ($db, $bg, $pid) = @_;
	my $off = -s $node->logfile;
	ok(kill('KILL', $pid), "$db: SIGKILL sent to backend $pid");
	close_bg($bg);
	ok(eval { $node->wait_for_log(qr/all server processes terminated; reinitializing.*ready to accept connections/s, $off); 1 },
		"$db: the server reinitialized after the crash");
	wait_server_up($db);
	return;
}

sub server_log_clean
{
	my ($db, $offset) = @_;
	my @bad = grep { /terminated by signal (?!9:)|PANIC|TRAP:|terminated by exception/ }
	  split /\n/, slurp_file($node->logfile, $offset);
	is(scalar(@bad), 0, "$db: no server process crashed on its own") or diag(join("\n", @bad));
	return;
}

# The job builds the unique indexes (and runs verify); then the data is checked.
sub build_indexes_and_verify
{
	my ($db) = @_;
	q1($db, q{SELECT customer_unify.launch('m', until => 'verified')});
	ok($node->poll_query_until($db, q{SELECT state IN ('finished', 'failed') FROM customer_unify.jobs WHERE name = 'm'}),
		"$db: the job ended");
	is(q1($db, q{SELECT state || coalesce(' ' || last_error, '') FROM customer_unify.jobs WHERE name = 'm'}), 'finished',
		"$db: the job built the indexes and verified");
	is(q1($db, q{SELECT coalesce(string_agg(check_name, ', ') FILTER (WHERE NOT ok), 'all ok') FROM customer_unify.verify('m')}),
		'all ok', "$db: verify is all ok");
	return;
}

sub check_final
{
	my ($db) = @_;
	is(q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'}), 'finalized', "$db: finalized");
	is(q1($db, q{SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'users_customer'::regclass AND contype = 'p'}),
		'PRIMARY KEY (id)', "$db: id is the primary key");
	is(q1($db, q{SELECT count(*) FROM shop_order o WHERE NOT EXISTS (SELECT 1 FROM users_customer c WHERE c.id = o.customer_id)}),
		'0', "$db: every order finds its customer by id");
	is(q1($db, q{SELECT count(*) FROM users_customer WHERE id <> user_id}), '0', "$db: every id preserved (id = user_id)");
	is(q1($db, q{SELECT count(*) FROM users_historicalcustomer WHERE user_id IS NULL OR id <> user_id}), '0',
		"$db: every history row has its customer's id and link");
	return;
}

# ------------------------------------------------------------ backfill crashes
for my $how (qw(backend immediate))
{
	my $db  = "rk_$how";
	my $off = -s $node->logfile;
	setup_db($db);
	my ($bg, $pid) = start_bg($db,
		"CALL customer_unify.backfill('m', batch_size => $BATCH, sleep_ms => 100, lock_timeout_ms => 10000);");
	app_writes($db, 1);
	ok($node->poll_query_until($db, q{SELECT coalesce(sum(rows_done), 0) > 4000 FROM customer_unify.progress WHERE name = 'm'}),
		"$db: the backfill is under way");
	app_writes($db, 2);
	if ($how eq 'backend')
	{
		kill_backend($db, $bg, $pid);
	}
	else
	{
		$node->stop('immediate');
		close_bg($bg);
		$node->start;
		wait_server_up($db);
	}
	is(q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'}), 'started', "$db: still started");
	is(q1($db, q{SELECT count(*) FROM customer_unify.progress WHERE name = 'm' AND finished_at IS NULL AND stream = 'a_source'}), '1',
		"$db: the table's copy stream did not finish");
	my $lk = q1($db, q{SELECT last_key FROM customer_unify.progress WHERE name = 'm' AND stream = 'a_source'});
	ok($lk ne '' && $lk > 0, "$db: a checkpoint was committed ($lk)");
	is(q1($db, "SELECT count(*) FROM users_customer WHERE user_ptr_id <= $lk AND (id IS NULL OR user_id IS NULL)"), '0',
		"$db: every row up to the checkpoint is filled");
	is(mismatched($db), '0', "$db: no row's new columns disagree with its key");
	app_writes($db, 3);
	q1($db, "CALL customer_unify.backfill('m', batch_size => $BATCH)");
	is(q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'}), 'backfilled', "$db: resumed to the end");
	is(q1($db, q{SELECT count(*) FROM users_customer WHERE id IS NULL OR user_id IS NULL}), '0', "$db: every row filled");
	is(mismatched($db), '0', "$db: still no disagreeing row");
	build_indexes_and_verify($db);
	app_writes($db, 4);
	q1($db, q{SELECT customer_unify.cutover('m')});
	q1($db, q{SELECT customer_unify.finalize('m')});
	check_final($db);
	server_log_clean($db, $off);
}

# ------------------------------------------------------------ crash in the key swap
{
	my $db  = 'rk_swap';
	my $off = -s $node->logfile;
	setup_db($db);
	q1($db, "CALL customer_unify.backfill('m', batch_size => $BATCH)");
	build_indexes_and_verify($db);
	q1($db, q{SELECT customer_unify.cutover('m')});
	# a reader holds ACCESS SHARE: finalize validates, takes SHARE, then waits for ACCESS EXCLUSIVE
	my ($holder, $hpid) = start_bg($db, 'BEGIN; SELECT count(*) FROM users_customer;');
	my ($bg, $pid) = start_bg($db, q{SELECT customer_unify.finalize('m');});
	ok($node->poll_query_until($db, qq{
		SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $pid AND l.relation = 'users_customer'::regclass
		                 AND l.mode = 'ShareLock' AND l.granted)
		   AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $pid AND NOT l.granted AND l.mode = 'AccessExclusiveLock')}),
		"$db: finalize holds SHARE and waits for ACCESS EXCLUSIVE");
	kill_backend($db, $bg, $pid);
	close_bg($holder);
	is(q1($db, q{SELECT state FROM customer_unify.migration WHERE name = 'm'}), 'cut_over', "$db: still cut_over after the crash");
	is(q1($db, q{SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'users_customer'::regclass AND contype = 'p'}),
		'PRIMARY KEY (user_ptr_id)', "$db: the old primary key is intact");
	is(q1($db, q{SELECT count(*) FROM pg_constraint WHERE conrelid = 'shop_order'::regclass AND contype = 'f'}), '2',
		"$db: the old reference and its twin are both there");
	app_writes($db, 5);
	q1($db, q{SELECT customer_unify.finalize('m')});
	check_final($db);
	server_log_clean($db, $off);
}

$node->stop;
done_testing();
