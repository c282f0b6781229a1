# The pool of workers (issue 12): a projection handler that writes and then
# sleeps 30 s on one event, while another projection, a subscription and 20
# sagas run under 8 writers (ocx.horizon = 'appenders'):
#   - the other projection's lag and the subscription's delivery delay,
#     sampled every 250 ms, stay under 1 s throughout;
#   - the 20 sagas complete while the slow handler still sleeps;
#   - the slow projection finishes, and every read model equals a replay;
#   - worker_status and pg_stat_activity show who runs what.
# Then the same cluster with the default snapshot horizon: the slow handler's
# open transaction holds every consumer (the stall is visible and bounded by
# the handler, not hidden), which is why the setting exists.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $examples = $ENV{OCX_EXAMPLES} or plan skip_all => 'OCX_EXAMPLES is not set';

my $node = PostgreSQL::Test::Cluster->new('pool');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.horizon = 'appenders'
ocx.max_workers = 4
ocx.naptime = '1s'
ocx.batch_size = 200
max_worker_processes = 16
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null',
	  '-d', $node->connstr('postgres'), '-f', "$examples/banking.sql" ],
	'load examples/banking.sql');

$node->safe_psql('postgres', q{
CREATE TABLE slow_model (pos bigint PRIMARY KEY);
CREATE TABLE fast_model (pos bigint PRIMARY KEY);
-- writes first (its transaction takes an xid), then sleeps on the one Slow event
CREATE FUNCTION slow_h(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.slow_model VALUES (e.global_position);
    IF e.type = 'Slow' THEN
        PERFORM pg_sleep(COALESCE((e.data->>'secs')::float8, 30));
    END IF;
END $$;
CREATE FUNCTION fast_h(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.fast_model VALUES (e.global_position) $$;
SELECT ocx.define_projection('slow', 'slow_h(ocx.event)', types => '{W,Slow}');
SELECT ocx.define_projection('fast', 'fast_h(ocx.event)', types => '{W}');
SELECT ocx.create_subscription('sub', types => '{W}');
CREATE TABLE received (pos bigint, delay float8);
-- a subscriber that polls, records each event's delivery delay and acknowledges
CREATE FUNCTION consume() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    batch ocx.event[];
    delivered timestamptz;
    last ocx.cursor;
BEGIN
    -- the delivery delay: from each event's time to when poll handed it over
    -- (not to when this loop got round to recording it)
    SELECT array_agg(e ORDER BY e.txid, e.global_position) INTO batch FROM ocx.poll('sub', 10000) e;
    delivered := clock_timestamp();
    IF batch IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO public.received
        SELECT b.global_position, EXTRACT(epoch FROM delivered - b.time) FROM unnest(batch) b;
    last := ocx.cursor(batch[cardinality(batch)].txid, batch[cardinality(batch)].global_position);
    PERFORM ocx.ack('sub', last);
END $$;
SELECT bank.open_account('src' || i, 'Source ' || i, 100) FROM generate_series(1, 20) i;
SELECT bank.open_account('dst', 'Destination', 0);
SELECT ocx.append_event('w-0', NULL, 'W', '{}');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM fast_model}), 'the projections run');
# the subscription starts empty-handed: w-0 is received before the clock starts
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM ocx.poll('sub', 10)}), 'the subscription has w-0');
$node->safe_psql('postgres', q{SELECT consume()});
is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(*) FILTER (WHERE delay > 0) FROM received}), '1 1',
	'and has received and acknowledged it');
$node->safe_psql('postgres', q{UPDATE received SET delay = 0});

# the slow event: a pool worker takes it and sleeps with an xid
$node->safe_psql('postgres', q{SELECT ocx.append_event('slow-1', NULL, 'Slow', '{}')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM ocx.worker_status()
	 WHERE unit = 'projection slow' AND unit_since < now() - interval '300 ms'}),
	'worker_status shows a process busy with the slow projection');
my $slow_pid = $node->safe_psql('postgres', q{
	SELECT pid FROM ocx.worker_status() WHERE unit = 'projection slow'});
is($node->safe_psql('postgres', qq{
	SELECT query || ' | ' || (backend_xid IS NOT NULL) FROM pg_stat_activity
	 WHERE pid = $slow_pid AND backend_type IN ('ocx worker', 'ocx worker helper')}),
	'ocx worker: projection slow | true', 'pg_stat_activity shows it, holding an xid');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM ocx.horizon_holder() WHERE pid = $slow_pid}), '0',
	'it holds an xid but does not append: horizon_holder does not name it');
is($node->safe_psql('postgres', q{SELECT pid IS NULL FROM ocx.horizon_holder()}), 't',
	'and with no appender running, nobody holds the horizon');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 1 FROM ocx.worker_status() WHERE role = 'helper' AND state IN ('idle', 'busy')}),
	'the launcher started a helper for the other units');
my $t_slow = time();

# 20 sagas while the handler sleeps
$node->safe_psql('postgres', q{SELECT bank.transfer('T' || i, 'src' || i, 'dst', 1) FROM generate_series(1, 20) i});
my $sagas_done_at;

# 8 writers for 10 s at 400 appends/s in all (a load the machine carries: the
# test is about one slow handler, not about a saturated CPU), and the
# subscriber polling all along
my $script = $node->basedir . '/writers.sql';
append_to_file($script, q{
\set s random(1, 500)
SELECT ocx.append_event('w-' || :s, NULL, 'W', '{}');
});
my $consumer = $node->basedir . '/consumer.sql';
append_to_file($consumer, q{
SELECT consume();
});
my ($out, $err, $cout, $cerr);
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '10', '-R', '400', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
my $subscriber = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '1', '-T', '11', '-f', $consumer,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$cout, '2>', \$cerr);

# sample every 250 ms: the fast projection's lag, the sagas
my ($max_lag, $samples) = (0, 0);
while ($writers->pumpable || $subscriber->pumpable)
{
	my $s = $node->safe_psql('postgres', q{
SELECT (SELECT lag_seconds FROM ocx.projection_status WHERE name = 'fast') || ' ' ||
       (SELECT count(*) FROM ocx.saga_instances WHERE saga_name = 'transfer' AND state = 'completed')});
	my ($lag, $done) = split / /, $s;
	$max_lag = $lag if $lag > $max_lag;
	$sagas_done_at //= time() if $done == 20;
	$samples++;
	$writers->pump_nb if $writers->pumpable;
	$subscriber->pump_nb if $subscriber->pumpable;
	usleep(250_000);
}
$writers->finish;
$subscriber->finish;
like($out, qr/number of transactions actually processed: [1-9]/, 'the writers appended') or diag($err);
like($cout, qr/number of transactions actually processed: [1-9]/, 'the subscriber polled') or diag($cerr);
my $max_delay = $node->safe_psql('postgres', q{SELECT max(delay) FROM received});
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM received}), '>', 100, 'the subscriber received events');
cmp_ok($samples, '>=', 8, "sampled the lag $samples times");
cmp_ok($max_lag, '<', 1, "the other projection's lag stayed under 1 s (max $max_lag s)");
cmp_ok($max_delay, '<', 1, "the subscription's delivery delay stayed under 1 s (max $max_delay s)");
ok(defined $sagas_done_at, '20 sagas completed');
cmp_ok(($sagas_done_at // 1e9) - $t_slow, '<', 25,
	'while the slow handler still slept') if defined $sagas_done_at;
is($node->safe_psql('postgres', q{SELECT count(*) FROM slow_model}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE type IN ('W', 'Slow')
	   AND (txid, global_position) <= (SELECT checkpoint_txid, checkpoint_position FROM ocx.projections WHERE name = 'slow')}),
	'the slow projection has applied what it checkpointed');
cmp_ok(time() - $t_slow, '<', 30, 'all of this within the slow handler\'s 30 s');

# the slow one finishes; every read model equals a replay
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = (SELECT count(*) FROM ocx.events WHERE type IN ('W', 'Slow')) FROM slow_model}),
	'the slow projection finishes');
ok($node->poll_query_until('postgres', q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'fast'}),
	'the fast projection is caught up');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  (SELECT pos FROM fast_model EXCEPT ALL SELECT global_position FROM ocx.events WHERE type = 'W')
	  UNION ALL
	  (SELECT global_position FROM ocx.events WHERE type = 'W' EXCEPT ALL SELECT pos FROM fast_model)) d}),
	'0', 'the fast read model equals a replay');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  (SELECT pos FROM slow_model EXCEPT ALL SELECT global_position FROM ocx.events WHERE type IN ('W', 'Slow'))
	  UNION ALL
	  (SELECT global_position FROM ocx.events WHERE type IN ('W', 'Slow') EXCEPT ALL SELECT pos FROM slow_model)) d}),
	'0', 'the slow read model equals a replay');
$node->safe_psql('postgres', q{SELECT consume()});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  (SELECT pos FROM received EXCEPT ALL SELECT global_position FROM ocx.events WHERE type = 'W')
	  UNION ALL
	  (SELECT global_position FROM ocx.events WHERE type = 'W' EXCEPT ALL SELECT pos FROM received)) d}),
	'0', 'the subscription delivered every event exactly once');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT state, ',') FROM ocx.saga_instances WHERE saga_name = 'transfer'}),
	'completed', 'every saga completed');

# An appender whose transaction took its xid before a horizon the workers
# used is refused with OX013, a retryable error; a retry succeeds.
my ($lout, $lerr) = ('', '');
my $late = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'), '-c', q{
CREATE TEMP TABLE t (x int);
BEGIN;
INSERT INTO t VALUES (1);   -- takes an xid
SELECT pg_sleep(3);         -- meanwhile another append commits and a reader passes a horizon
SELECT ocx.append_event('late-1', NULL, 'W', '{}');
COMMIT;} ], '>', \$lout, '2>', \$lerr);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%late-1%' AND backend_xid IS NOT NULL
	   AND pid <> pg_backend_pid()}), 'a transaction with an xid is about to append late');
$node->safe_psql('postgres', q{SELECT ocx.append_event('other-1', NULL, 'W', '{}')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_all(NULL, NULL) WHERE stream_id = 'other-1'}), '1',
	'a reader passes it');
$late->finish;
like($lerr, qr/OX013/, 'the late appender is refused with OX013');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id = 'late-1'}), '0',
	'and writes nothing');
is($node->safe_psql('postgres', q{SELECT ocx.append_event('late-1', NULL, 'W', '{}')}), '1',
	'the retry succeeds');
my ($rc, $o, $e) = $node->psql('postgres', q{
BEGIN;
SELECT ocx.append_event('prep-1', NULL, 'W', '{}');
PREPARE TRANSACTION 'p1';}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($e, qr/OX013.*cannot prepare/s, 'PREPARE TRANSACTION of an append is refused');

# the default: the slow handler's xid holds every consumer at its horizon
$node->append_conf('postgresql.conf', "ocx.horizon = 'snapshot'");
$node->restart;
$node->safe_psql('postgres', q{SELECT ocx.append_event('slow-2', NULL, 'Slow', '{"secs": 6}')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM ocx.worker_status() WHERE unit = 'projection slow'
	   AND unit_since < now() - interval '300 ms'}),
	'snapshot horizon: the slow handler sleeps again');
$node->safe_psql('postgres', q{SELECT ocx.append_event('w-after', NULL, 'W', '{}')});
usleep(2_000_000);
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM fast_model f JOIN ocx.events e ON e.global_position = f.pos WHERE e.stream_id = 'w-after'}),
	'0', 'snapshot horizon: the other projection waits at the slow handler\'s xid');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM fast_model f JOIN ocx.events e ON e.global_position = f.pos WHERE e.stream_id = 'w-after'}),
	'and catches up when it commits');

$node->stop;
done_testing();
