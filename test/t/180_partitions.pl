# A projection split into partitions by stream (issue 12): the partitions
# run in parallel (the database worker and helpers), each event is applied
# exactly once and each stream's events in order, through a kill -9 of a
# process in the middle of a partition's batch; the number of partitions
# changes only when every partition is at the same checkpoint (after a
# rebuild, say); an inline projection cannot be partitioned.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('partitions');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.max_workers = 4
ocx.naptime = '200ms'
ocx.batch_size = 50
max_worker_processes = 12
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (seq bigserial, stream_id text, version bigint, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.002);
    INSERT INTO public.model (stream_id, version, pos) VALUES (e.stream_id, e.stream_version, e.global_position);
END $$;
CREATE FUNCTION reset() RETURNS void LANGUAGE sql AS $$ TRUNCATE public.model $$;
SELECT ocx.define_projection('part', 'apply(ocx.event)', reset => 'reset()', partitions => 4);
});
is($node->safe_psql('postgres', q{SELECT string_agg(partition::text, ',' ORDER BY partition) FROM ocx.projection_partitions WHERE projection = 'part'}),
	'0,1,2,3', 'four partitions, each with its checkpoint');
is($node->safe_psql('postgres', q{SELECT partitions FROM ocx.projection_status WHERE name = 'part'}), '4',
	'projection_status shows the partitions');

my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT ocx.define_projection('inl', 'apply(ocx.event)', mode => 'inline', partitions => 2)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/OX201.*inline projection cannot be partitioned/s, 'an inline projection cannot be partitioned');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT ocx.define_projection('bad', 'apply(ocx.event)', partitions => 65)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/OX201/, 'at most 64 partitions');

my $script = $node->basedir . '/writers.sql';
append_to_file($script, q{
\set s random(1, 100)
SELECT ocx.append_event('acct-' || :s, NULL, 'Tick', '{}');
});
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '6', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \my $wout, '2>', \my $werr);

ok($node->poll_query_until('postgres', q{
	SELECT count(DISTINCT unit) >= 2 FROM ocx.worker_status() WHERE unit LIKE 'projection part/%'}),
	'partitions run at the same time in different processes');

# kill -9 the process running a partition's batch, in the middle of it
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity
	 WHERE backend_type IN ('ocx worker', 'ocx worker helper') AND state = 'active'
	   AND query LIKE 'ocx worker: projection part/%' AND backend_xid IS NOT NULL}),
	'a process is in the middle of a partition batch (its handler has written)');
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type IN ('ocx worker', 'ocx worker helper') AND state = 'active'
	   AND query LIKE 'ocx worker: projection part/%' AND backend_xid IS NOT NULL LIMIT 1});
my $before = $node->safe_psql('postgres', q{SELECT count(*) FROM model});
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', q{SELECT true}, 't'), "the cluster is back after kill -9 of $pid ($before applied)");
$writers->finish;
like($wout, qr/number of transactions actually processed: [1-9]/, 'the writers appended');

sub caught_up
{
	return $node->poll_query_until('postgres', q{
		SELECT lag_events = 0 AND (SELECT count(*) FROM model) = (SELECT count(*) FROM ocx.events)
		  FROM ocx.projection_status WHERE name = 'part'});
}
my $diff = q{
SELECT count(*) FROM (
  (SELECT stream_id, version, pos FROM model
   EXCEPT ALL SELECT stream_id, stream_version, global_position FROM ocx.events)
  UNION ALL
  (SELECT stream_id, stream_version, global_position FROM ocx.events
   EXCEPT ALL SELECT stream_id, version, pos FROM model)) d};
my $order = q{
SELECT count(*) FROM (
  SELECT row_number() OVER (PARTITION BY stream_id ORDER BY seq) AS by_apply,
         row_number() OVER (PARTITION BY stream_id ORDER BY version) AS by_version
    FROM model) x WHERE by_apply <> by_version};
ok(caught_up(), 'the partitions catch up after the crash');
is($node->safe_psql('postgres', q{
	SELECT ocx.append_event('acct-7', NULL, 'Tick', '{}') > 0;
	SELECT ocx.wait_for('part', ocx.last_append_cursor(), '20 s');
	SELECT count(*) FROM model m JOIN ocx.events e ON e.global_position = m.pos
	 WHERE (e.txid, e.global_position) = (ocx.txid(ocx.last_append_cursor()), ocx.global_position(ocx.last_append_cursor()))}),
	"t\nt\n1", 'wait_for a partitioned projection returns once its partitions passed the cursor');
is($node->safe_psql('postgres', $diff), '0', 'the read model equals a replay: every event exactly once');
is($node->safe_psql('postgres', $order), '0', "each stream's events were applied in order");
is($node->safe_psql('postgres', q{
	SELECT (SELECT "checkpoint"::text FROM ocx.projection_status WHERE name = 'part')
	     = (SELECT ocx.cursor(checkpoint_txid, checkpoint_position)::text FROM ocx.projection_partitions
	         ORDER BY checkpoint_txid, checkpoint_position LIMIT 1)}),
	't', "projection_status shows the slowest partition's checkpoint");
is($node->safe_psql('postgres', q{SELECT events_applied FROM ocx.projection_status WHERE name = 'part'}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events}), 'and the events applied by all partitions');

# another number of partitions needs one checkpoint for all: make partition 0
# disagree (by hand; the rebuild below starts the read model again)
$node->safe_psql('postgres', q{SELECT ocx.pause_projection('part')});
$node->safe_psql('postgres', q{
	UPDATE ocx.projection_partitions SET checkpoint_position = checkpoint_position - 1
	 WHERE projection = 'part' AND partition = 0;});
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT ocx.define_projection('part', 'apply(ocx.event)', reset => 'reset()', partitions => 2)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/OX201.*different checkpoints/s, 'partitions at different checkpoints: the count cannot change');
is($node->safe_psql('postgres', q{SELECT partitions FROM ocx.projections WHERE name = 'part'}), '4', 'and nothing changed');
$node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.rebuild_projection('part');
SELECT ocx.define_projection('part', 'apply(ocx.event)', reset => 'reset()', partitions => 2);
COMMIT;});
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.projection_partitions WHERE projection = 'part'}), '2',
	'after a rebuild in the same transaction: two partitions');
$node->safe_psql('postgres', q{SELECT ocx.resume_projection('part')});
ok(caught_up(), 'the rebuilt projection catches up');
is($node->safe_psql('postgres', $diff), '0', 'and equals a replay');
is($node->safe_psql('postgres', $order), '0', 'in order per stream');

# back to one partition: its checkpoint is the partitions' one
$node->safe_psql('postgres', q{SELECT ocx.pause_projection('part')});
my $agree = $node->safe_psql('postgres', q{
	SELECT count(DISTINCT (checkpoint_txid, checkpoint_position)) = 1 FROM ocx.projection_partitions WHERE projection = 'part'});
is($agree, 't', 'caught up and paused: the two partitions agree');
$node->safe_psql('postgres', q{SELECT ocx.define_projection('part', 'apply(ocx.event)', reset => 'reset()', partitions => 1)});
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.projection_partitions}), '0', 'one partition: no partition rows');
$node->safe_psql('postgres', q{SELECT ocx.resume_projection('part'); SELECT ocx.append_event('acct-2', NULL, 'Tick', '{}')});
ok(caught_up(), 'unpartitioned, it goes on from there');
is($node->safe_psql('postgres', $diff), '0', 'exactly once');

# DROP DATABASE is not held up by a database's helpers
$node->safe_psql('postgres', 'CREATE DATABASE busy');
$node->safe_psql('busy', q{
CREATE EXTENSION ocx;
CREATE TABLE m (pos bigint);
CREATE FUNCTION slow(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.m VALUES (e.global_position);
    PERFORM pg_sleep(CASE WHEN e.stream_id IN ('s-1', 's-2', 's-3', 's-4') THEN 60 ELSE 0.05 END);
END $$;
SELECT ocx.define_projection('slow', 'slow(ocx.event)', partitions => 4);
SELECT count(ocx.append_event('s-' || i, NULL, 'Tick', '{}')) FROM generate_series(1, 400) i;});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 1 FROM ocx.worker_status() WHERE datname = 'busy' AND role = 'helper' AND state = 'busy'
	   AND unit_since < now() - interval '1 s'}),
	'database busy has a helper in a handler that sleeps a minute');
my $t0 = time();
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE busy');
is($rc, 0, 'DROP DATABASE succeeds while its helpers are busy (it needs every session gone)') or diag($err);
cmp_ok(time() - $t0, '<', 4, 'and is not held up by them');

$node->stop;
done_testing();
