# The launcher and database workers: one worker per database with ocx and no
# configuration; DROP DATABASE and DROP EXTENSION are never blocked by a busy
# worker; many databases created and dropped quickly; a terminated worker is
# restarted; no free worker slot gives a WARNING and a retry; without
# shared_preload_libraries the worker functions say how to enable them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('life');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
max_worker_processes = 4   # launcher, logical replication launcher, two workers
ocx.max_workers = 1        # no helpers: one process per database
ocx.batch_size = 20
max_parallel_workers_per_gather = 0
ocx.naptime = '1s'
});
$node->start;

# A database with ocx and a projection whose handler is slow, with work queued.
sub busy_database
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
CREATE EXTENSION ocx;
CREATE TABLE slow_model (pos bigint);
CREATE FUNCTION slow(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.02);
    INSERT INTO public.slow_model VALUES (e.global_position);
END $$;
SELECT ocx.define_projection('slow', 'slow(ocx.event)');
SELECT ocx.append_event('slow-' || i, NULL, 'Tick', '{}') FROM generate_series(1, 2000) i;
});
	ok($node->poll_query_until($db, q{SELECT count(*) > 0 FROM slow_model}),
		"$db: its worker started by itself and is busy");
}

sub timed
{
	my ($db, $sql) = @_;
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql($db, $sql);
	return ($rc, time() - $t0, $err);
}

# many databases created and dropped quickly (what pg_regress does)
my $ok = 1;
for my $i (1 .. 15)
{
	my $db = "churn$i";
	my ($r1) = $node->psql('postgres', "CREATE DATABASE $db");
	my ($r2) = $node->psql($db, q{CREATE EXTENSION ocx; SELECT ocx.append_event('c-1', NULL, 'C', '{}')});
	# every other time, let its worker connect first
	$node->poll_query_until('postgres',
		qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND datname = '$db'})
	  if $i % 2 == 0;
	my ($r3, $s3, $e3) = timed('postgres', "DROP DATABASE $db");
	if ($r1 || $r2 || $r3 || $s3 > 4)
	{
		diag("churn $i: create $r1, use $r2, drop $r3 in $s3 s: $e3");
		$ok = 0;
	}
}
ok($ok, 'fifteen databases created, used and dropped, none blocked');

busy_database('d1');
busy_database('d2');
is($node->safe_psql('d1',
	q{SELECT string_agg(datname, ',' ORDER BY datname) FROM ocx.worker_status() WHERE state = 'running'}),
	'd1,d2', 'one worker per database with ocx');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND query LIKE 'ocx worker: projection slow'}),
	'2', 'pg_stat_activity shows what each worker does');
# after each batch a worker publishes no unit until it takes the next one
# (src/pool.c, RunUnit): a single look can fall in that moment, so poll
ok($node->poll_query_until('d1',
	q{SELECT string_agg(datname || ' ' || role || ' ' || unit, ',' ORDER BY datname) FROM ocx.worker_status() WHERE unit IS NOT NULL},
	'd1 worker projection slow,d2 worker projection slow'), 'worker_status shows the unit each worker runs');

# no free worker slot: a WARNING and a retry, not a crash loop
$node->safe_psql('postgres', 'CREATE DATABASE d3');
$node->safe_psql('d3', q{CREATE EXTENSION ocx; CREATE TABLE m (pos bigint);
CREATE FUNCTION h(e ocx.event) RETURNS void LANGUAGE sql AS $$ INSERT INTO public.m VALUES (e.global_position) $$;
SELECT ocx.define_projection('h', 'h(ocx.event)');
SELECT ocx.append_event('x-1', NULL, 'X', '{}');});
ok($node->wait_for_log(qr/no background worker slot available for a database worker/), 'no free slot: a WARNING');

# DROP DATABASE while its worker is busy.  The time limits below are far from
# what being held up would take: each busy database has 2000 events queued at
# 20 ms each (40 s of work), and the worker would only let go at the end of it.
my ($rc, $secs, $err) = timed('postgres', 'DROP DATABASE d1');
is($rc, 0, 'DROP DATABASE succeeds while its worker is busy') or diag($err);
cmp_ok($secs, '<', 4, sprintf('and is not held up by the worker (%.2f s)', $secs));

# the freed slot goes to the waiting database
ok($node->poll_query_until('d3', q{SELECT count(*) = 1 FROM m}),
	'the waiting database gets its worker when a slot frees up');

# DROP EXTENSION while the worker is in a long batch
($rc, $secs, $err) = timed('d2', 'DROP EXTENSION ocx CASCADE');
is($rc, 0, 'DROP EXTENSION succeeds while the worker is busy') or diag($err);
cmp_ok($secs, '<', 4, sprintf('and is not held up by the batch (%.2f s)', $secs));
ok($node->poll_query_until('d3',
	q{SELECT count(*) = 0 FROM ocx.worker_status() WHERE datname = 'd2' AND state = 'running'}),
	'its worker is gone');
# and comes back with the extension
$node->safe_psql('d2', 'CREATE EXTENSION ocx');
ok($node->poll_query_until('d3',
	q{SELECT count(*) = 1 FROM ocx.worker_status() WHERE datname = 'd2' AND state = 'running'}),
	'CREATE EXTENSION starts it again');

# a terminated worker is restarted by the launcher
my $pid = $node->safe_psql('d3',
	q{SELECT pid FROM ocx.worker_status() WHERE datname = 'd3'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('d3',
	qq{SELECT count(*) = 1 FROM ocx.worker_status() WHERE datname = 'd3' AND state = 'running' AND pid <> $pid}),
	'a terminated worker is restarted');
$node->safe_psql('d3', q{SELECT ocx.append_event('x-1', NULL, 'X', '{}')});
ok($node->poll_query_until('d3', q{SELECT count(*) = 2 FROM m}), 'and goes on working');

# SIGHUP reaches the workers: the running worker (same pid) reads its batches with
# the new ocx.batch_size (20 before): a projection recording the transaction of
# each event sees at most 3 events per transaction after the reload
$node->safe_psql('d3', q{
CREATE TABLE mb (pos bigint, x xid8 DEFAULT pg_current_xact_id());
CREATE FUNCTION hb(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.mb (pos) VALUES (e.global_position) $$;
SELECT ocx.define_projection('hb', 'hb(ocx.event)', categories => '{b}');
});
my $wpid = $node->safe_psql('d3',
	q{SELECT pid FROM ocx.worker_status() WHERE datname = 'd3' AND state = 'running'});
$node->append_conf('postgresql.conf', "ocx.naptime = '2s'\nocx.batch_size = 3");
$node->reload;
ok($node->poll_query_until('d3', q{SELECT current_setting('ocx.batch_size') = '3'}),
	'settings reload');
# the worker takes the reload at the top of its next pass (SIGHUP sets its latch)
$node->safe_psql('d3', q{SELECT ocx.append_event('b-0', NULL, 'B', '{}')});
ok($node->poll_query_until('d3', q{SELECT count(*) = 1 FROM mb}), 'the worker applies after the reload');
$node->safe_psql('d3', q{SELECT ocx.append_event('b-' || i, NULL, 'B', '{}') FROM generate_series(1, 30) i});
ok($node->poll_query_until('d3', q{SELECT count(*) = 31 FROM mb}), 'the worker applies 30 events at once');
is($node->safe_psql('d3', q{
	SELECT max(n) || ' ' || (count(*) >= 10) FROM (SELECT count(*) n FROM mb WHERE pos > (SELECT min(pos) FROM mb) GROUP BY x) b}),
	'3 true', 'SIGHUP reaches the worker: its batches hold the new ocx.batch_size (3) events');
is($node->safe_psql('d3',
	q{SELECT pid FROM ocx.worker_status() WHERE datname = 'd3' AND state = 'running'}),
	$wpid, 'the same worker process, not a restarted one');

# ocx.databases narrows the databases served
$node->append_conf('postgresql.conf', "ocx.databases = 'd3'");
$node->reload;
ok($node->poll_query_until('d3',
	q{SELECT string_agg(datname, ',') = 'd3' FROM ocx.worker_status() WHERE state = 'running'}),
	'ocx.databases: only d3 keeps its worker');
# (pg_ctl waits up to 60 s; workers that ignored SIGTERM would use all of it)
my $t0 = time();
$node->stop('fast');
cmp_ok(time() - $t0, '<', 10, 'a fast shutdown is not held up by the workers');

# without shared_preload_libraries
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{CREATE EXTENSION ocx; CREATE FUNCTION h(e ocx.event) RETURNS void LANGUAGE sql AS '';});
is($plain->safe_psql('postgres', q{SELECT ocx.append_event('p-1', NULL, 'P', '{}')}), '1',
	'without preloading, appends work');
($rc, my $out, $err) = $plain->psql('postgres', q{SELECT ocx.define_projection('h', 'h(ocx.event)')});
like($err, qr/ERROR:  ocx.define_projection\(\) needs the ocx background workers/,
	'define_projection says it needs the workers');
like($err, qr/HINT:  Add ocx to shared_preload_libraries/, 'and how to enable them');
($rc, $out, $err) = $plain->psql('postgres', q{SELECT * FROM ocx.worker_status()},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/OX210/, 'worker_status raises OX210');
$plain->stop;

done_testing();
