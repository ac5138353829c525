# 002_rollback_every_state.pl - rollback from every state restores the exact
# schema and keeps every row.
#
# For each state the migration can be rolled back from
#   planned, started, mid-backfill (started, some batches done), backfilled,
#   verified, cut_over
# and for two split variants (mixed-case target "Profiles" with link "UserRef";
# lower-case target with an own identity key target_key => 'Id'), a fresh
# database gets a users/orders schema with awkward but ordinary features:
# mixed-case and spaced identifiers, a table and column comments, a CHECK on a
# moved column, indexes on moved columns, column privileges granted to a role,
# table privileges, a view on a moved column, a user trigger, an FK from orders.
#
# Then:
#   1. pg_dump --schema-only --exclude-schema=customer_unify is taken;
#   2. the migration is advanced to the state, and rows are written: directly
#      to the source in every state, to the target table from 'backfilled' on,
#      through the compatibility view in 'cut_over'. A shadow copy of the
#      tables (schema "shadow", present in both dumps) gets the same writes
#      without the extension; the source must equal it (it is kept complete
#      before finalize);
#   3. rollback(); state 'rolled_back'; the schema dump equals the first one
#      byte for byte; the data checksums of the user tables equal the ones
#      taken just before rollback and the shadow's; the source was not
#      rewritten (same relfilenode); the target, triggers and compat schema
#      are gone; a second rollback fails with 55000; the table can be
#      migrated again.
# Along the way: the per-migration triggers (customer_unify_<id>_sync, _flush,
# _truncate_begin, _truncate on the source, _sync and _truncate on the target,
# ENABLE ALWAYS; at most _route on the compat view) exist, and a write through
# the compat view in replica mode (session_replication_role = replica)
# reaches the tables or is refused, never silently dropped.
# Then rollback after finalize fails with SQLSTATE 55000 and changes nothing;
# after finalize only the _capture triggers remain on the tables and _route
# on the view (a replica-mode write through the finalized view is a TODO: a
# documented PostgreSQL limitation), and the catalog is readable but not
# writable by other roles (42501).
# Finally the source is dropped behind the DDL guard's back (which refuses it
# with 55006 while switched on): rollback keeps the target, which holds the
# only copy of the moved columns, drops the rest and says so in a NOTICE.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('rollback');
$node->init;
$node->append_conf('postgresql.conf', "log_line_prefix = '%m [%p] %q%d '\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE ROLE cu_reader NOLOGIN;
	CREATE ROLE cu_app NOLOGIN;
});

my @STATES = ('planned', 'started', 'mid-backfill', 'backfilled', 'verified', 'cut_over');

my %VARIANT = (
	A => {
		name   => 'UsersSplit',
		target => 'Profiles',
		link   => 'UserRef',
		extra  => q{, link_column => 'UserRef'},
	},
	B => {
		name   => 'users_split_b',
		target => 'profiles',
		link   => 'user_id',
		extra  => q{, link_column => 'user_id', target_key => 'Id'},
	},
);

# ------------------------------------------------------------------ helpers

sub qid { my $s = shift; $s =~ s/"/""/g; return qq{"$s"}; }
sub lit { my $s = shift; $s =~ s/'/''/g; return qq{'$s'}; }

# Run SQL; an error is a failed assertion (with the message), not a die.
sub run_ok
{
	my ($db, $sql, $name) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 1);
	ok($rc == 0, $name) or diag("rc=$rc\n$err");
	return $out;
}

sub state_of
{
	my ($db, $mig) = @_;
	return $node->safe_psql($db,
		"SELECT state FROM customer_unify.migration WHERE name = " . lit($mig));
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

sub checksum
{
	my ($db, $table) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM $table t");
}

sub checksums
{
	my ($db, $schema) = @_;
	return join(' ',
		checksum($db, qq{$schema."Users"}),
		checksum($db, qq{$schema."Orders"}));
}

sub files_differ_diag
{
	my ($a, $b, $label) = @_;
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my ($fa, $fb) = ("$dir/$label.before.sql", "$dir/$label.after.sql");
	append_to_file($fa, $a) unless -e $fa;
	append_to_file($fb, $b) unless -e $fb;
	my ($out, $err);
	IPC::Run::run([ 'diff', '-u', $fa, $fb ], '>', \$out, '2>', \$err);
	diag("schema dump differs:\n$out");
	return;
}

my $SETUP = q{
	CREATE EXTENSION customer_unify;
	CREATE TABLE public."Users" (
	    id          bigint PRIMARY KEY,
	    email       text NOT NULL CONSTRAINT users_email_key UNIQUE,
	    "FirstName" text COLLATE "C",
	    "Last Name" text NOT NULL DEFAULT '',
	    "Phone"     varchar(20) CONSTRAINT "Users_Phone_check" CHECK ("Phone" ~ '^\+[0-9]{6,15}$'),
	    birth_date  date,
	    created_at  timestamptz NOT NULL DEFAULT now()
	);
	COMMENT ON TABLE public."Users" IS 'All the people';
	COMMENT ON COLUMN public."Users"."FirstName" IS 'Given name';
	COMMENT ON COLUMN public."Users"."Phone" IS 'E.164 phone';
	CREATE INDEX "Users_Phone_idx" ON public."Users" ("Phone");
	CREATE INDEX users_name_idx ON public."Users" ("Last Name", "FirstName");
	CREATE INDEX users_email_lower_idx ON public."Users" (lower(email));
	GRANT SELECT (id, "FirstName", email), UPDATE ("Phone") ON public."Users" TO cu_reader;
	GRANT SELECT, INSERT, UPDATE, DELETE ON public."Users" TO cu_app;
	CREATE FUNCTION public.users_touch() RETURNS trigger LANGUAGE plpgsql
	    AS $$ BEGIN RETURN NEW; END $$;
	CREATE TRIGGER users_touch BEFORE UPDATE ON public."Users"
	    FOR EACH ROW EXECUTE FUNCTION public.users_touch();
	CREATE VIEW public."UserNames" AS SELECT id, "FirstName", "Last Name" FROM public."Users";
	CREATE TABLE public."Orders" (
	    id       bigint PRIMARY KEY,
	    "UserId" bigint NOT NULL REFERENCES public."Users" (id),
	    amount   numeric(10,2) NOT NULL CHECK (amount >= 0),
	    note     text
	);
	CREATE INDEX "Orders_UserId_idx" ON public."Orders" ("UserId");
	COMMENT ON COLUMN public."Orders"."UserId" IS 'buyer';

	INSERT INTO public."Users"
	SELECT g, 'user' || g || '@example.com',
	       CASE WHEN g % 13 = 0 THEN NULL ELSE 'First' || g END,
	       'Last' || (g % 50),
	       CASE WHEN g % 4 = 0 THEN NULL ELSE '+1555' || lpad(g::text, 7, '0') END,
	       CASE WHEN g % 7 = 0 THEN NULL ELSE date '1960-01-01' + g * 13 END,
	       timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour'
	  FROM generate_series(1, 500) g;
	INSERT INTO public."Orders"
	SELECT g, 1 + g % 300, (g % 97) * 1.25, CASE WHEN g % 3 = 0 THEN 'note ' || g END
	  FROM generate_series(1, 1000) g;

	-- the oracle: same data, same writes, no extension
	CREATE SCHEMA shadow;
	CREATE TABLE shadow."Users" AS SELECT * FROM public."Users";
	CREATE TABLE shadow."Orders" AS SELECT * FROM public."Orders";
	ANALYZE;
};

# Apply $sql (with %S for the schema) to public and shadow in one transaction.
sub both_ok
{
	my ($db, $sql, $name) = @_;
	my $all = "BEGIN;\n";
	for my $s ('public', 'shadow')
	{
		(my $x = $sql) =~ s/%S/$s/g;
		$all .= "$x;\n";
	}
	$all .= "COMMIT;\n";
	return run_ok($db, $all, $name);
}

# Writes straight to the source, legal in every state.
sub direct_writes
{
	my ($db, $tag) = @_;
	both_ok(
		$db, qq{
		INSERT INTO %S."Users" (id, email, "FirstName", "Last Name", "Phone", birth_date, created_at)
		VALUES (1001, 'direct\@example.com', 'Dee', 'Rect', '+15559990001', date '1990-01-01',
		        timestamptz '2023-01-01 00:00:00+00');
		INSERT INTO %S."Orders" VALUES (5001, 1001, 9.99, 'direct order');
		UPDATE %S."Users" SET "FirstName" = 'Upd', "Phone" = NULL WHERE id = 10;
		UPDATE %S."Users" SET email = 'kept-' || id || '\@example.org' WHERE id = 11;
		UPDATE %S."Users" SET "Last Name" = 'O''Brien', birth_date = NULL, email = 'both\@example.org' WHERE id = 12;
		UPDATE %S."Users" SET "FirstName" = NULL WHERE id BETWEEN 100 AND 110;
		DELETE FROM %S."Users" WHERE id IN (450, 451);
		UPDATE %S."Orders" SET amount = amount + 1 WHERE id <= 5},
		"$db: direct writes to the source ($tag)");
	return;
}

# Writes to the target table (mirrored to the source by the sync trigger).
sub target_writes
{
	my ($db, $v) = @_;
	my $t = qid($v->{target});
	my $l = qid($v->{link});
	run_ok(
		$db, qq{
		BEGIN;
		UPDATE public.$t SET "FirstName" = 'ViaTarget', "Phone" = '+15550000042' WHERE $l = 20;
		UPDATE public.$t SET "Last Name" = 'TargetLast' WHERE $l IN (21, 22);
		UPDATE shadow."Users" SET "FirstName" = 'ViaTarget', "Phone" = '+15550000042' WHERE id = 20;
		UPDATE shadow."Users" SET "Last Name" = 'TargetLast' WHERE id IN (21, 22);
		COMMIT;},
		"$db: writes to the target table $t");
	return;
}

# Writes through the compatibility view, as an old application would.
sub compat_writes
{
	my ($db, $v) = @_;
	my $cs = $node->safe_psql(
		$db, q{
		SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relname = 'Users' AND c.relkind = 'v'});
	is($cs, "$v->{name}_compat", "$db: compat view in schema $v->{name}_compat");
	$cs = "$v->{name}_compat" if $cs eq '';
	my $sp = qid($cs);
	my $out = run_ok(
		$db, qq{
		BEGIN;
		SET LOCAL search_path = $sp, public;
		INSERT INTO "Users" (id, email, "FirstName", "Phone", birth_date)
		     VALUES (1002, 'compat\@example.com', 'Compat', '+15559990002', date '1985-05-05')
		  RETURNING id, email, "FirstName", "Last Name", "Phone", birth_date, created_at = now();
		INSERT INTO shadow."Users" VALUES (1002, 'compat\@example.com', 'Compat', '', '+15559990002',
		                                   date '1985-05-05', now());
		UPDATE "Users" SET "FirstName" = 'Routed', email = 'routed\@example.com' WHERE id = 30
		  RETURNING id, "FirstName", email;
		UPDATE shadow."Users" SET "FirstName" = 'Routed', email = 'routed\@example.com' WHERE id = 30;
		UPDATE "Users" SET "Phone" = NULL WHERE id BETWEEN 31 AND 35;
		UPDATE shadow."Users" SET "Phone" = NULL WHERE id BETWEEN 31 AND 35;
		DELETE FROM "Users" WHERE id = 460 RETURNING id, "FirstName";
		DELETE FROM shadow."Users" WHERE id = 460;
		INSERT INTO public."Orders" VALUES (5002, 1002, 1.00, 'compat order');
		INSERT INTO shadow."Orders" VALUES (5002, 1002, 1.00, 'compat order');
		COMMIT;},
		"$db: writes through the compat view $sp.\"Users\"");
	is( $out,
		"1002|compat\@example.com|Compat||+15559990002|1985-05-05|t\n30|Routed|routed\@example.com\n460|First460",
		"$db: compat view RETURNING rows (defaults carried over)");
	return;
}

# The migration's own triggers on a relation, as name:tgenabled, with the
# migration id replaced by ID.
sub own_triggers
{
	my ($db, $rel, $mig) = @_;
	my $id = $node->safe_psql($db, "SELECT id FROM customer_unify.migration WHERE name = " . lit($mig));
	my $t = $node->safe_psql(
		$db, qq{
		SELECT coalesce(string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname), '')
		  FROM pg_trigger WHERE tgrelid = '$rel'::regclass AND tgname LIKE 'customer\\_unify\\_%'});
	$t =~ s/customer_unify_\Q$id\E_/customer_unify_ID_/g;
	return $t;
}

# A write through the compatibility view from a session in replica mode (a
# restore, a logical replica's apply): the route trigger is ENABLE ALWAYS, so
# the write reaches the tables, or it is refused; it is never dropped
# silently.  The shadow gets it only if it was applied.
sub compat_replica_write
{
	my ($db, $v) = @_;
	my $sp = qid("$v->{name}_compat");
	my ($rc, $out, $err) = $node->psql(
		$db, qq{
		BEGIN;
		SET LOCAL session_replication_role = replica;
		UPDATE $sp."Users" SET "FirstName" = 'ReplicaRouted', email = 'replica\@example.org' WHERE id = 40;
		COMMIT;}, on_error_stop => 1);
	my $now = $node->safe_psql($db, q{SELECT "FirstName" || '/' || email FROM public."Users" WHERE id = 40});
	if ($rc == 0)
	{
		is($now, 'ReplicaRouted/replica@example.org',
			"$db: a write through the compat view in replica mode reaches the source (not dropped silently)");
		$node->safe_psql($db,
			q{UPDATE shadow."Users" SET "FirstName" = 'ReplicaRouted', email = 'replica@example.org' WHERE id = 40})
		  if $now eq 'ReplicaRouted/replica@example.org';
	}
	else
	{
		unlike($now, qr/ReplicaRouted/, "$db: a write through the compat view in replica mode is refused ($err)");
	}
	return;
}

# ------------------------------------------------------------------ cases

my $case = 0;
for my $vk (sort keys %VARIANT)
{
	my $v = $VARIANT{$vk};
	my $m = lit($v->{name});
	for my $state (@STATES)
	{
		$case++;
		(my $sname = $state) =~ s/-/_/g;
		my $db = lc "rb_${vk}_$sname";
		note "==================== variant $vk, rollback from $state ====================";
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, $SETUP);

		my $dump_before = schema_dump($db);
		my $relfile = $node->safe_psql($db, q{SELECT pg_relation_filenode('public."Users"')});
		my $trig_before = $node->safe_psql($db,
			q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'public."Users"'::regclass});

		# ---- advance
		run_ok(
			$db, qq{
			SELECT customer_unify.split(name => $m, source => 'public."Users"'::regclass,
			    target => } . lit($v->{target}) . qq{,
			    columns => ARRAY['FirstName', 'Last Name', 'Phone', 'birth_date']$v->{extra})},
			"$db: split()");
		is(state_of($db, $v->{name}), 'planned', "$db: planned");
		if ($state ne 'planned')
		{
			run_ok($db, "SELECT customer_unify.start($m)", "$db: start()");
			is(state_of($db, $v->{name}), 'started', "$db: started");
			is( own_triggers($db, 'public."Users"', $v->{name}),
				'customer_unify_ID_flush:A,customer_unify_ID_sync:A,customer_unify_ID_truncate:A,customer_unify_ID_truncate_begin:A',
				"$db: the source has the migration's sync, flush and truncate triggers, ENABLE ALWAYS");
			is( own_triggers($db, 'public.' . qid($v->{target}), $v->{name}),
				'customer_unify_ID_sync:A,customer_unify_ID_truncate:A',
				"$db: the target has the migration's sync and truncate triggers, ENABLE ALWAYS");
		}
		if ($state eq 'mid-backfill')
		{
			run_ok($db,
				"CALL customer_unify.backfill($m, batch_size => 50, max_batches => 3)",
				"$db: partial backfill");
			is( $node->safe_psql(
					$db, qq{
				SELECT m.state || ':' || (b.rows_done > 0 AND b.finished_at IS NULL)
				  FROM customer_unify.migration m JOIN customer_unify.backfill_state b ON b.migration_id = m.id
				 WHERE m.name = $m}),
				'started:true',
				"$db: state 'started' with some rows done");
		}
		if (grep { $state eq $_ } qw(backfilled verified cut_over))
		{
			run_ok($db, "CALL customer_unify.backfill($m, batch_size => 64)", "$db: backfill");
			is(state_of($db, $v->{name}), 'backfilled', "$db: backfilled");
		}
		if (grep { $state eq $_ } qw(verified cut_over))
		{
			is( $node->safe_psql($db,
					"SELECT bool_and(ok) AND count(*) > 0 FROM customer_unify.verify($m)"),
				't', "$db: verify() all ok");
			is(state_of($db, $v->{name}), 'verified', "$db: verified");
		}
		if ($state eq 'cut_over')
		{
			run_ok($db, "SELECT customer_unify.cutover($m)", "$db: cutover()");
			is(state_of($db, $v->{name}), 'cut_over', "$db: cut_over");
			# the live view is either plain (PostgreSQL updates it) or routed by the migration's trigger
			like(own_triggers($db, qid("$v->{name}_compat") . '."Users"', $v->{name}),
				qr/^(customer_unify_ID_route:[AO])?$/, "$db: the compat view has no trigger but the migration's route trigger");
		}

		# ---- write in that state
		direct_writes($db, $state);
		target_writes($db, $v) if grep { $state eq $_ } qw(backfilled verified cut_over);
		if ($state eq 'cut_over')
		{
			compat_writes($db, $v);
			compat_replica_write($db, $v);
		}

		my $sum_src = checksums($db, 'public');
		is($sum_src, checksums($db, 'shadow'),
			"$db: source equals the shadow after the writes (kept complete)");

		# the comparison below is not vacuous: the live migration shows in the dump
		if ($state ne 'planned')
		{
			ok(schema_dump($db) ne $dump_before, "$db: the live migration changed the schema dump");
		}

		# ---- rollback
		is($node->safe_psql($db, "SELECT customer_unify.rollback($m)"),
			'rolled_back', "$db: rollback() returns 'rolled_back'");
		is(state_of($db, $v->{name}), 'rolled_back', "$db: state 'rolled_back'");

		my $dump_after = schema_dump($db);
		ok($dump_after eq $dump_before, "$db: schema dump identical to the one before the migration")
		  or files_differ_diag($dump_before, $dump_after, $db);
		is(checksums($db, 'public'), $sum_src, "$db: data checksums unchanged by rollback");
		is(checksums($db, 'public'), checksums($db, 'shadow'),
			"$db: data equals the shadow after rollback");
		is($node->safe_psql($db, q{SELECT pg_relation_filenode('public."Users"')}),
			$relfile, "$db: source table never rewritten");
		is( $node->safe_psql(
				$db, "SELECT to_regclass('public.' || quote_ident(" . lit($v->{target}) . ")) IS NULL"),
			't', "$db: target table dropped");
		is( $node->safe_psql($db,
				"SELECT count(*) FROM pg_namespace WHERE nspname = " . lit("$v->{name}_compat")),
			'0', "$db: compat schema dropped");
		is( $node->safe_psql($db,
				q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'public."Users"'::regclass}),
			$trig_before, "$db: only the user's own triggers remain on the source");

		my ($rc, $out, $err) = $node->psql($db,
			"\\set VERBOSITY sqlstate\nSELECT customer_unify.rollback($m)");
		like($err, qr/\b55000\b/, "$db: second rollback fails with 55000");

		# the table is free for a new migration
		run_ok(
			$db, qq{
			SELECT customer_unify.split(name => 'again', source => 'public."Users"'::regclass,
			    target => 'profiles_again', columns => ARRAY['Phone']);
			SELECT customer_unify.start('again');
			CALL customer_unify.backfill('again', batch_size => 1000);},
			"$db: a new migration of the same table can start after rollback");
		$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
	}
}

# ------------------------------------------------------ rollback after finalize
{
	my $db = 'rb_finalized';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, q{
		CREATE EXTENSION customer_unify;
		CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, first_name text, phone text);
		INSERT INTO users SELECT g, 'u' || g || '@example.com', 'F' || g, '+1555' || g FROM generate_series(1, 300) g;
	});
	run_ok(
		$db, q{
		SELECT customer_unify.split(name => 'fin', source => 'public.users'::regclass,
		    target => 'profiles', columns => ARRAY['first_name', 'phone'], link_column => 'user_id');
		SELECT customer_unify.start('fin');
		CALL customer_unify.backfill('fin', batch_size => 100);
		SELECT count(*) FROM customer_unify.verify('fin');
		SELECT customer_unify.cutover('fin');
		SELECT customer_unify.finalize('fin');},
		"$db: split run through finalize");
	is(state_of($db, 'fin'), 'finalized', "$db: state finalized");
	is(own_triggers($db, 'public.users', 'fin'), 'customer_unify_ID_capture:A',
		"$db: after finalize the source has only the capture trigger, ENABLE ALWAYS");
	is(own_triggers($db, 'public.profiles', 'fin'), 'customer_unify_ID_capture:A',
		"$db: after finalize the target has only the capture trigger, ENABLE ALWAYS");
	like(own_triggers($db, 'fin_compat.users', 'fin'), qr/^customer_unify_ID_route:O$/,
		"$db: after finalize the compat view has the route trigger (ENABLE: a view's trigger cannot be ALWAYS, and pg_dump must restore it)");
	{
		# PostgreSQL cannot make a view's trigger ENABLE ALWAYS (README,
		# Limitations): in replica mode the route trigger does not fire and
		# the joined view's write does nothing, yet reports a row
		my ($rc, $out, $err) = $node->psql(
			$db, q{
			BEGIN;
			SET LOCAL session_replication_role = replica;
			UPDATE fin_compat.users SET first_name = 'ReplicaRouted', email = 'replica@example.org' WHERE id = 7;
			COMMIT;}, on_error_stop => 1);
		my $now = $node->safe_psql($db, q{SELECT first_name || '/' || email FROM fin_compat.users WHERE id = 7});
		local $TODO = 'documented limitation: a view trigger cannot be ENABLE ALWAYS, replica-mode writes through the finalized view are lost';
		ok(($rc == 0 && $now eq 'ReplicaRouted/replica@example.org') || ($rc != 0 && $now !~ /ReplicaRouted/),
			"$db: a write through the finalized compat view in replica mode is applied or refused, not dropped silently ($now)");
	}
	# undo it if it was applied, so that the checks below see the finalized data
	$node->safe_psql($db, q{UPDATE profiles SET first_name = 'F7' WHERE user_id = 7 AND first_name = 'ReplicaRouted'});
	$node->safe_psql($db, q{UPDATE users SET email = 'u7@example.com' WHERE id = 7 AND email = 'replica@example.org'});

	# the catalog is written by the engine only: others may read it
	for my $t (qw(migration step_log backfill_state migration_relation step sync_map sync_map_column))
	{
		is( $node->safe_psql(
				$db, qq{SELECT has_table_privilege('cu_app', 'customer_unify.$t', 'SELECT')
				  || '/' || has_table_privilege('cu_app', 'customer_unify.$t', 'INSERT, UPDATE, DELETE, TRUNCATE')}),
			'true/false', "$db: customer_unify.$t: a non-owner may SELECT, not write");
	}
	{
		my ($rc, $out, $err) = $node->psql($db,
			"\\set VERBOSITY sqlstate\nSET ROLE cu_app;\nUPDATE customer_unify.migration SET state = 'cut_over' WHERE name = 'fin';");
		like($err, qr/\b42501\b/, "$db: a non-owner's UPDATE of the catalog fails with 42501");
		is(state_of($db, 'fin'), 'finalized', "$db: ... and changes nothing");
	}
	my $dump = schema_dump($db);
	my $sum = $node->safe_psql($db,
		q{SELECT md5(string_agg(t::text, ',' ORDER BY user_id)) FROM profiles t});
	my ($rc, $out, $err) = $node->psql($db,
		"\\set VERBOSITY sqlstate\nSELECT customer_unify.rollback('fin')");
	isnt($rc, 0, "$db: rollback after finalize fails");
	like($err, qr/\b55000\b/, "$db: rollback after finalize fails with SQLSTATE 55000");
	is(state_of($db, 'fin'), 'finalized', "$db: state still finalized");
	ok(schema_dump($db) eq $dump, "$db: failed rollback changed no schema");
	is( $node->safe_psql($db,
			q{SELECT md5(string_agg(t::text, ',' ORDER BY user_id)) FROM profiles t}),
		$sum, "$db: failed rollback changed no data");
}

# ------------------------------------- rollback after the source was dropped
# The DDL guard refuses to drop a live migration's source (55006). With the
# guard switched off, the source can be dropped anyway; rollback then keeps
# the target (it holds the only copy of the moved columns), drops the rest
# (the sync triggers on the target, the compat schema) and says so in a
# NOTICE.
for my $state ('mid-backfill', 'cut_over')
{
	(my $sname = $state) =~ s/-/_/g;
	my $db = "rb_gone_$sname";
	note "==================== rollback from $state after the source was dropped ====================";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, q{
		CREATE EXTENSION customer_unify;
		CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, first_name text, phone text);
		INSERT INTO users SELECT g, 'u' || g || '@example.com', 'F' || g, '+1555' || g FROM generate_series(1, 300) g;
		SELECT customer_unify.split(name => 'gone', source => 'public.users'::regclass,
		    target => 'profiles', columns => ARRAY['first_name', 'phone'], link_column => 'user_id');
		SELECT customer_unify.start('gone');
	});
	if ($state eq 'mid-backfill')
	{
		run_ok($db, q{CALL customer_unify.backfill('gone', batch_size => 50, max_batches => 2)},
			"$db: partial backfill");
	}
	else
	{
		run_ok(
			$db, q{
			CALL customer_unify.backfill('gone', batch_size => 100);
			SELECT count(*) FROM customer_unify.verify('gone');
			SELECT customer_unify.cutover('gone');},
			"$db: split run to cut_over");
	}
	my $copy = $node->safe_psql($db,
		q{SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY user_id), '')) FROM profiles t});

	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY sqlstate\nDROP TABLE users CASCADE");
	like($err, qr/\b55006\b/, "$db: the guard refuses DROP TABLE of the live source (55006)");
	is($node->safe_psql($db, q{SELECT to_regclass('public.users') IS NOT NULL}), 't', "$db: ... the source is still there");

	run_ok(
		$db, q{
		ALTER EVENT TRIGGER customer_unify_guard_drop DISABLE;
		ALTER EVENT TRIGGER customer_unify_guard_ddl DISABLE;
		DROP TABLE users CASCADE;
		ALTER EVENT TRIGGER customer_unify_guard_drop ENABLE;
		ALTER EVENT TRIGGER customer_unify_guard_ddl ENABLE;},
		"$db: the source dropped with the guard switched off");

	($rc, $out, $err) = $node->psql($db, q{SELECT customer_unify.rollback('gone')});
	is($rc, 0, "$db: rollback succeeds without the source") or diag($err);
	is($out, 'rolled_back', "$db: rollback returns 'rolled_back'");
	like($err, qr/NOTICE:.*keeping\b.*\b(target|profiles)\b/, "$db: a NOTICE says the target is kept") or diag($err);
	is(state_of($db, 'gone'), 'rolled_back', "$db: state 'rolled_back'");
	is($node->safe_psql($db,
			q{SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY user_id), '')) FROM profiles t}),
		$copy, "$db: the target is kept with all its rows");
	is( $node->safe_psql($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.profiles'::regclass}),
		'0', "$db: the target's sync triggers are dropped");
	is($node->safe_psql($db, q{SELECT count(*) FROM pg_namespace WHERE nspname = 'gone_compat'}),
		'0', "$db: no compat schema left");
	is( $node->safe_psql($db, q{SELECT count(*) FROM customer_unify.migration_relation WHERE live}),
		'0', "$db: no relation of the migration is live any more");
	run_ok(
		$db, q{
		INSERT INTO profiles (user_id, first_name, phone) VALUES (100001, 'Kept', NULL);
		UPDATE profiles SET phone = '+1' WHERE user_id = 1;
		DELETE FROM profiles WHERE user_id = 100001;},
		"$db: the kept target is an ordinary table again (writes work)");
	run_ok($db, 'DROP TABLE profiles', "$db: and it can be dropped (the guard lets it go)");
	$node->safe_psql('postgres', "DROP DATABASE $db WITH (FORCE)");
}

$node->stop;
done_testing();
