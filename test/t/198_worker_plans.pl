# The worker's reads of the log stay index walks as the log grows (issue 16).
#
# The worker keeps its statements' plans for the life of its process, and a
# kept plan is planned again only when something invalidates it.  The bus
# and the projection reader plan their reads with the first events: over a
# log that small a sequential scan and a sort look cheapest, and that plan
# was kept while the log grew, so every wake-up of the worker read and
# sorted the whole log (at 100,000 events it took most of a core from the
# appenders, docs/performance.md).  Here the log starts with ten events, the
# bus announces each and a projection applies each, the log then grows to
# 50,010 events, and 200 appends (200 wake-ups) follow: the worker's
# sequential reads of ocx.events in that time, as its own table statistics
# count them, stay far below one read of the log.  The worker also reports
# those statistics at all (it did not, so autovacuum never saw what it
# wrote): its projection's updates of the read model are counted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_plans');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '200ms'
autovacuum = off
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE counts (k int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counts VALUES (1, 0);
CREATE FUNCTION count_event(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ UPDATE counts SET n = n + 1 WHERE k = 1 $$;
SELECT ocx.define_projection('counter', 'count_event(ocx.event)');
});

# poll until the query returns 't'
sub wait_true
{
	my ($sql, $what) = @_;
	$node->poll_query_until('postgres', $sql) or die "timed out waiting for $what";
}

# the bus has announced the last event and the projection applied $n events
# (index probes only: the test's own queries read nothing sequentially)
sub caught_up
{
	my ($n) = @_;
	return qq{
SELECT b.events_position = (SELECT max(global_position) FROM ocx.events)
   AND (SELECT n FROM counts) = $n
  FROM ocx.bus_state b};
}

# ten events, one by one, each announced and applied before the next: the
# bus and the projection plan their reads now (the plan cache makes custom
# plans for the first five runs of a statement, then keeps a generic one)
for my $i (1 .. 10)
{
	$node->safe_psql('postgres', qq{SELECT ocx.append_event('first-$i', NULL, 'Tick', '{}')});
	wait_true(caught_up($i), "event $i");
}

# the log grows to 50,010 events in one statement
$node->safe_psql('postgres', q{
SELECT ocx.append('big-' || s, NULL,
                  (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('n', i)))
                     FROM generate_series(1, 100) i))
  FROM generate_series(1, 500) s});
wait_true(caught_up(50010), 'the 50,000 events');
is($node->safe_psql('postgres', q{SELECT max(global_position) FROM ocx.events}), '50010',
	'the log holds 50,010 events');

# the worker reports its statistics (at most once a second, after a step)
my $stats = q{
SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relid = 'ocx.events'::regclass};
ok($node->poll_query_until('postgres',
		q{SELECT n_tup_upd >= 50010 FROM pg_stat_user_tables WHERE relid = 'counts'::regclass}),
	'the worker\'s updates of the read model reach the table statistics');
sleep(2);
my $before = $node->safe_psql('postgres', $stats);

# 200 appends, each its own transaction: 200 wake-ups of the worker
$node->safe_psql('postgres', q{
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM ocx.append_event('small-' || i, NULL, 'Tick', '{}');
        COMMIT;
        PERFORM pg_sleep(0.005);
    END LOOP;
END $$});
wait_true(caught_up(50210), 'the 200 appends');
is($node->safe_psql('postgres', q{SELECT n FROM counts}), '50210', 'the projection applied every event once');
# the statistics of the last steps
wait_true(q{SELECT n_tup_upd >= 50210 FROM pg_stat_user_tables WHERE relid = 'counts'::regclass},
	'the worker\'s statistics of the last steps');
sleep(2);
my $after = $node->safe_psql('postgres', $stats);
note("rows of ocx.events read by sequential scans during the 200 wake-ups: " . ($after - $before));
cmp_ok($after - $before, '<', 50010,
	'200 wake-ups of the worker over a 50,010-event log read less than the log once by sequential scans');

$node->stop;
done_testing();
