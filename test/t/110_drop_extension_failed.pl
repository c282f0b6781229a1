# Issue 11, item 8: a DROP EXTENSION ocx that fails (a view on ocx.events
# depends on it, no CASCADE: 2BP01) leaves the worker alone: same pid, no
# batch cut short ('deadlock detected' never logged).  DROP ... CASCADE still
# ends the worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dropfail');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
ocx.batch_size = 20
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE d');
$node->safe_psql('d', q{
CREATE EXTENSION ocx;
CREATE TABLE model (pos bigint);
CREATE FUNCTION slow(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.01);
    INSERT INTO public.model VALUES (e.global_position);
END $$;
SELECT ocx.define_projection('slow', 'slow(ocx.event)');
SELECT ocx.append_event('tick-' || i, NULL, 'Tick', '{}') FROM generate_series(1, 300) i;
CREATE VIEW event_counts AS SELECT type, count(*) FROM ocx.events GROUP BY type;
});
ok($node->poll_query_until('d', q{SELECT count(*) > 0 FROM model}), 'the worker is busy');
my $pid = $node->safe_psql('d', q{SELECT pid FROM ocx.worker_status() WHERE datname = 'd' AND role = 'worker'});
like($pid, qr/^\d+$/, 'the worker runs');
my $log_offset = -s $node->logfile;

my ($rc, $out, $err) = $node->psql('d', "\\set VERBOSITY verbose\nDROP EXTENSION ocx;");
isnt($rc, 0, 'DROP EXTENSION without CASCADE fails');
like($err, qr/2BP01/, 'with 2BP01 (dependent objects)');

# let the worker finish a few more batches
sleep(2);
is($node->safe_psql('d', q{SELECT pid FROM ocx.worker_status() WHERE datname = 'd' AND state = 'running'}),
	$pid, 'the worker pid is unchanged after the failed DROP');
is($node->safe_psql('d', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND backend_type = 'ocx worker'"),
	'1', 'the same worker process is still connected');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/deadlock detected/, 'no deadlock detected in the log');
unlike($log, qr/terminating background worker|terminating connection due to administrator command/,
	'the worker was not terminated');

$node->safe_psql('d', 'DROP EXTENSION ocx CASCADE');
ok($node->poll_query_until('d', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'DROP EXTENSION ... CASCADE ends the worker');
is($node->safe_psql('d', q{SELECT count(*) FROM pg_class WHERE relname = 'event_counts'}), '0',
	'the CASCADE dropped the view');

$node->stop;
done_testing();
