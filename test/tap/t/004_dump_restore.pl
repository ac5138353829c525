# 004_dump_restore.pl - a database dumped in the middle of a migration
# restores without an error and the migration carries on.
#
# For each state a migration can be dumped in (started with half the copy
# done, backfilled, cut_over, finalized), a database with a users table
# (row-level security, a grant to an application role) and a split in that
# state is dumped with pg_dump -Fc and restored with pg_restore
# --exit-on-error into a new database; cut_over also through a plain dump
# run by psql in one transaction (psql -1 -v ON_ERROR_STOP=1).  In the
# restored database:
#  - the restore reported nothing (exit 0, no ERROR);
#  - the catalog came along: the migration, its state, relations, maps and
#    checkpoint; the source keeps its primary key, the target its key and
#    link, the migration's triggers are there and ENABLE ALWAYS (the view's
#    router after finalize ENABLE), and the DDL guard guards again;
#  - the sync triggers mirror a write, the migration runs to its end
#    (backfill resumes from the checkpoint), verify passes, the view shows
#    every row with the values expected, and writes through it work;
#  - a new migration gets a new id (the catalog's sequences came along).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $NROWS = 3000;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE ROLE app_user');

sub setup_db
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, qq{
		CREATE EXTENSION customer_unify;
		CREATE TABLE users (
		    id         bigint PRIMARY KEY,
		    email      text NOT NULL UNIQUE,
		    tenant     text NOT NULL DEFAULT 'a',
		    first_name text,
		    phone      text CHECK (phone ~ '^[0-9+]+\$')
		);
		CREATE INDEX users_phone_idx ON users (phone);
		INSERT INTO users SELECT g, 'u' || g || '\@example.com', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END,
		                         'F' || g, '+1' || g FROM generate_series(1, $NROWS) g;
		ALTER TABLE users ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant_a ON users USING (tenant = 'a');
		GRANT SELECT, INSERT, UPDATE, DELETE ON users TO app_user;
		SELECT customer_unify.split('m', 'public.users', 'profiles', ARRAY['first_name', 'phone'],
		                            link_column => 'user_id');
		SELECT customer_unify.start('m');
	});
}

# the migration's triggers, as "table:name:enabled", sorted
sub triggers
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
		SELECT coalesce(string_agg(t.tgrelid::regclass || ':' || regexp_replace(t.tgname, '_\d+_', '_ID_') || ':' || t.tgenabled::text,
		                           ' ' ORDER BY t.tgrelid::regclass::text, t.tgname), '')
		  FROM pg_trigger t WHERE t.tgname LIKE 'customer\_unify\_%'});
}

sub catalog_summary
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
		SELECT m.name || '/' || m.state || '/' ||
		       (SELECT string_agg(r.tag || '=' || r.relid::regclass || ':' || r.live, ',' ORDER BY r.tag)
		          FROM customer_unify.migration_relation r WHERE r.migration_id = m.id) || '/' ||
		       (SELECT string_agg(s.name, ',' ORDER BY s.name) FROM customer_unify.sync_map s WHERE s.migration_id = m.id) || '/' ||
		       (SELECT coalesce(string_agg(b.stream || ':' || coalesce(b.last_key, '-') || ':' || b.rows_done, ','), '')
		          FROM customer_unify.backfill_state b WHERE b.migration_id = m.id) || '/' ||
		       (SELECT count(*) FROM customer_unify.step s WHERE s.migration_id = m.id)
		  FROM customer_unify.migration m WHERE m.name = 'm'});
}

sub restore_ok
{
	my ($src, $dst, $format) = @_;
	my $file = $node->basedir . "/$src.$format.dump";
	$node->safe_psql('postgres', "CREATE DATABASE $dst");
	my ($ok, $out, $err);
	if ($format eq 'custom')
	{
		$ok = run_log([ 'pg_dump', '-Fc', '-d', $node->connstr($src), '-f', $file ]);
		ok($ok, "$src: pg_dump -Fc");
		my $h = IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $node->connstr($dst), $file ],
			'>', \$out, '2>', \$err);
		ok($h, "$src: pg_restore --exit-on-error exits 0");
	}
	else
	{
		$ok = run_log([ 'pg_dump', '-Fp', '-d', $node->connstr($src), '-f', $file ]);
		ok($ok, "$src: pg_dump -Fp");
		my $h = IPC::Run::run(
			[ 'psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($dst), '-f', $file ],
			'>', \$out, '2>', \$err);
		ok($h, "$src: the plain dump runs in one transaction with ON_ERROR_STOP");
	}
	unlike($err // '', qr/ERROR/, "$src -> $dst: the restore reports no error")
	  or diag($err);
}

# values the view must show for every row, after the extra writes below
my $EXPECTED = q{SELECT md5(string_agg(id || ':' || email || ':' || tenant || ':' || coalesce(first_name, '-') || ':' || coalesce(phone, '-'), ',' ORDER BY id))};

sub check_restored
{
	my ($src, $dst, $state) = @_;
	is(catalog_summary($dst), catalog_summary($src), "$dst: the catalog is the one dumped ($state)");
	is(triggers($dst), triggers($src), "$dst: the migration's triggers are there, enabled as dumped");
	is($node->safe_psql($dst, q{SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND indisprimary}),
		'1', "$dst: users keeps its primary key");
	my $indexes = q{SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index
	                 WHERE indrelid IN ('users'::regclass, 'profiles'::regclass)};
	is($node->safe_psql($dst, $indexes), $node->safe_psql($src, $indexes), "$dst: the indexes of both tables");
	is($node->safe_psql($dst, q{SELECT count(*) FROM users}), $NROWS, "$dst: every source row");

	if ($state ne 'finalized')
	{
		like(triggers($dst), qr/^(\S+:A ?)+$/, "$dst: every trigger of the live migration is ENABLE ALWAYS");
		# the guard guards again
		my ($rc, $o, $e) = $node->psql($dst, 'ALTER TABLE users RENAME COLUMN phone TO phone2');
		like($e, qr/while migration "m" is live/, "$dst: the DDL guard refuses a rename of a moved column again");
		# a write is mirrored
		$node->safe_psql($dst, q{UPDATE users SET phone = '+999' WHERE id = 2});
		is($node->safe_psql($dst, q{SELECT phone FROM profiles WHERE user_id = 2}), '+999',
			"$dst: a write to users is mirrored into profiles");
		# to the end
		$node->safe_psql($dst, q{CALL customer_unify.backfill('m', batch_size => 500)}) if $state eq 'started';
		is($node->safe_psql($dst, q{SELECT count(*) FILTER (WHERE NOT ok) || '/' || count(*) FROM customer_unify.verify('m')}),
			'0/6', "$dst: verify passes");
		$node->safe_psql($dst, q{SELECT customer_unify.cutover('m')}) unless $state eq 'cut_over';
		$node->safe_psql($dst, q{SELECT customer_unify.finalize('m')});
	}
	else
	{
		like(triggers($dst), qr/m_compat\.users:customer_unify_ID_route:O/, "$dst: the view's router came along");
		$node->safe_psql($dst, q{UPDATE m_compat.users SET phone = '+999' WHERE id = 2});
	}
	is($node->safe_psql($dst, q{SELECT state FROM customer_unify.migration WHERE name = 'm'}), 'finalized',
		"$dst: the migration ran to its end");
	$node->safe_psql(
		$dst, q{
		INSERT INTO m_compat.users (id, email, first_name, phone) VALUES (100000, 'new@example.com', 'New', '+100000');
		UPDATE m_compat.users SET first_name = 'Changed' WHERE id = 3});
	my $want = $node->safe_psql(
		'postgres', qq{
		$EXPECTED FROM (
		  SELECT g AS id, 'u' || g || '\@example.com' AS email, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END AS tenant,
		         CASE WHEN g = 3 THEN 'Changed' ELSE 'F' || g END AS first_name,
		         CASE WHEN g = 2 THEN '+999' ELSE '+1' || g END AS phone
		    FROM generate_series(1, $NROWS) g
		  UNION ALL SELECT 100000, 'new\@example.com', 'a', 'New', '+100000') x});
	is($node->safe_psql($dst, "$EXPECTED FROM m_compat.users"), $want,
		"$dst: the view shows every row with its values, and writes through it work");
	my $next = $node->safe_psql(
		$dst, q{
		CREATE TABLE other (id int PRIMARY KEY, x text);
		SELECT customer_unify.split('other', 'public.other', 'other_x', ARRAY['x'])
		     > (SELECT max(id) FROM customer_unify.migration WHERE name = 'm')});
	is($next, 't', "$dst: a new migration gets a new id");
}

# started, half of the copy done
setup_db('s_started');
$node->safe_psql('s_started', q{CALL customer_unify.backfill('m', batch_size => 500, max_batches => 3)});
restore_ok('s_started', 'r_started', 'custom');
check_restored('s_started', 'r_started', 'started');

setup_db('s_backfilled');
$node->safe_psql('s_backfilled', q{CALL customer_unify.backfill('m')});
restore_ok('s_backfilled', 'r_backfilled', 'custom');
check_restored('s_backfilled', 'r_backfilled', 'backfilled');

setup_db('s_cut_over');
$node->safe_psql('s_cut_over', q{CALL customer_unify.backfill('m'); SELECT customer_unify.cutover('m')});
restore_ok('s_cut_over', 'r_cut_over', 'custom');
check_restored('s_cut_over', 'r_cut_over', 'cut_over');
restore_ok('s_cut_over', 'p_cut_over', 'plain');
check_restored('s_cut_over', 'p_cut_over', 'cut_over');

setup_db('s_finalized');
$node->safe_psql('s_finalized',
	q{CALL customer_unify.backfill('m'); SELECT customer_unify.cutover('m'); SELECT customer_unify.finalize('m')});
restore_ok('s_finalized', 'r_finalized', 'custom');
check_restored('s_finalized', 'r_finalized', 'finalized');

$node->stop;
done_testing();
