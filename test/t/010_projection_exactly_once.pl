# An async projection's read model equals the one a full replay builds:
# (a) after 8 concurrent writers with 10% rolled-back transactions,
# (b) after kill -9 of the worker in the middle of a batch,
# (c) after an immediate shutdown and restart of the cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('proj');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
ocx.batch_size = 100
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (stream_id text, stream_version bigint, n int, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('test.slow', true) = 'on' OR e.data ? 'slow' THEN
        PERFORM pg_sleep(0.002);
    END IF;
    INSERT INTO public.model VALUES (e.stream_id, e.stream_version, (e.data->>'n')::int, e.global_position);
END $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
});

# the read model a full replay builds, compared with the projection's
my $diff_sql = q{
SELECT (SELECT count(*) FROM model) || ':' || (SELECT count(*) FROM (
    (SELECT stream_id, stream_version, n, pos FROM model
     EXCEPT ALL
     SELECT stream_id, stream_version, (data->>'n')::int, global_position
       FROM ocx.read_all(NULL, NULL, NULL, '{acct}'))
    UNION ALL
    (SELECT stream_id, stream_version, (data->>'n')::int, global_position
       FROM ocx.read_all(NULL, NULL, NULL, '{acct}')
     EXCEPT ALL
     SELECT stream_id, stream_version, n, pos FROM model)) d)
};

sub caught_up
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres',
		q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
		"$what: the projection catches up");
	my $events = $node->safe_psql('postgres',
		q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
	is($node->safe_psql('postgres', $diff_sql), "$events:0",
		"$what: read model equals a full replay, every event applied once");
}

# (a) 8 concurrent writers, 10% of their transactions rolled back
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 40)
\set r random(1, 10)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', jsonb_build_object('n', :r));
SELECT ocx.append('acct-' || (:s + 1), NULL, jsonb_build_array(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', :r)), jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('n', -:r))));
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
});
$node->command_ok(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', '150', '--max-tries', '100', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'(a) 8 concurrent writers with rolled-back transactions (two streams each: a serialization failure, 40001, is retried)');
my $rolled = $node->safe_psql('postgres', q{SELECT 3 * 8 * 150 - count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
ok($rolled > 0, "(a) some appends were rolled back ($rolled events)");
caught_up('(a)');

# (b) kill -9 of the worker in the middle of a batch (a slow handler makes
# batches long)
$node->safe_psql('postgres', q{
SELECT ocx.append('acct-' || i, NULL, jsonb_build_array(
         jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', j, 'slow', true))))
  FROM generate_series(1, 100) i, generate_series(1, 10) j});
ok($node->poll_query_until('postgres', q{
SELECT events_applied > (SELECT count(*) - 900 FROM ocx.events WHERE stream_id LIKE 'acct-%')
   AND lag_events > 0 FROM ocx.projection_status WHERE name = 'model'}),
	'(b) the worker is in the middle of the new events');
# kill the process running the projection's batch while that batch's transaction
# has written (backend_xid is set once the handler's first insert ran): read the
# pid and kill it at once, so the batch is the one caught in the middle
my $pid = '';
for (1 .. 600)
{
	$pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type IN ('ocx worker', 'ocx worker helper') AND datname = 'postgres'
		   AND state = 'active' AND query LIKE 'ocx worker: projection model%'
		   AND backend_xid IS NOT NULL LIMIT 1});
	last if $pid ne '';
	usleep(20_000);
}
ok($pid =~ /^\d+$/, "(b) a process is in the middle of the projection's batch, its handler has written ($pid)");
kill 'KILL', $pid;
# the postmaster restarts everything after a crash
ok($node->poll_query_until('postgres', q{SELECT true}, 't'), '(b) the cluster is back after the crash');
caught_up('(b)');

# (c) an immediate shutdown in the middle of a batch, then a restart
$node->safe_psql('postgres', q{
SELECT ocx.append('acct-' || i, NULL, jsonb_build_array(
         jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', j, 'slow', true))))
  FROM generate_series(1, 100) i, generate_series(1, 10) j});
ok($node->poll_query_until('postgres', q{
SELECT events_applied > (SELECT count(*) - 900 FROM ocx.events WHERE stream_id LIKE 'acct-%')
   AND lag_events > 0 FROM ocx.projection_status WHERE name = 'model'}),
	'(c) the worker is in the middle of the new events');
$node->stop('immediate');
$node->start;
caught_up('(c)');

# the worker came back on its own after each crash
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM ocx.worker_status() WHERE datname = 'postgres' AND state = 'running'}),
	'1', 'one worker serves the database');

$node->stop;
done_testing();
