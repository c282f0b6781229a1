# Blue/green rebuild of a partitioned projection (4 partitions) under load:
# every partition replays into the shadow table from its own shadow
# checkpoint, in parallel, and the tables and all four checkpoints are swapped
# in one transaction once every partition's shadow has caught up with its
# live partition.  The shadow replay of partition 0 is made much slower than
# the others, so a swap that did not wait for every partition would show the
# reader a half table.  While writers append and a reader polls the live
# table, the reader never sees it empty or going back (count and sum only
# grow); afterwards the read model equals a replay of the log.  A second
# rebuild survives a kill -9 of a pool worker in the middle of a shadow batch
# and still ends equal to a replay.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $node = PostgreSQL::Test::Cluster->new('bluegreen_parts');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
ocx.batch_size = 100
ocx.max_workers = 4
restart_after_crash = on
});
$node->start;

# Slow only during the shadow replay, and partition 0 much slower: its
# shadow lags the others' by seconds.  10 ms an event (~1,000 events: 10 s
# at least), so that the reader samples the live table throughout the
# rebuild even on a loaded machine: with 3 ms, once the one reader handed
# each partition only its own events, the rebuild was short enough for a
# loaded machine (load average 10 on 2 cores) to sample it 6 or 8 times.
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE bg_reader LOGIN;
CREATE TABLE balances (account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL);
CREATE FUNCTION apply_balance(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ocx.projection_schema') <> '' THEN
        IF ocx.stream_partition(e.stream_id, 4) = 0 THEN
            PERFORM pg_sleep(0.01);
        ELSE
            PERFORM pg_sleep(0.0002);
        END IF;
    END IF;
    INSERT INTO balances AS b VALUES (e.stream_id, (e.data->>'n')::bigint, 1)
    ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance, events = b.events + 1;
END $$;
SELECT ocx.define_projection('balances', 'apply_balance(ocx.event)', categories => '{acct}',
                             tables => '{balances}', partitions => 4);
SELECT ocx.append('acct-' || (i % 300), NULL, jsonb_build_array(
         jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', i % 7))))
  FROM generate_series(1, 4000) i;
GRANT SELECT ON balances TO bg_reader;
});
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'balances'}),
	'the live projection (4 partitions) catches up with 4000 events');
my $oid_before = $node->safe_psql('postgres', q{SELECT 'balances'::regclass::oid});

my $replay_diff = q{
SELECT count(*) FROM (
    (SELECT account, balance, events FROM balances
     EXCEPT ALL
     SELECT stream_id, sum((data->>'n')::bigint), count(*) FROM ocx.events
      WHERE stream_id LIKE 'acct-%' GROUP BY stream_id)
    UNION ALL
    (SELECT stream_id, sum((data->>'n')::bigint), count(*) FROM ocx.events
      WHERE stream_id LIKE 'acct-%' GROUP BY stream_id
     EXCEPT ALL
     SELECT account, balance, events FROM balances)) d};

my $script = $node->basedir . '/writers.sql';
append_to_file($script, q{
\set s random(0, 299)
\set n random(1, 9)
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', jsonb_build_object('n', :n));
});
sub start_writers
{
	my ($seconds, $out, $err) = @_;
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $seconds, '-R', '150', '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', $out, '2>', $err);
}

# --- 1. under load, with a reader polling the live table --------------------
my ($wout, $werr) = ('', '');
my $writers = start_writers(15, \$wout, \$werr);
ok($node->poll_query_until('postgres', q{SELECT count(*) > 4000 FROM ocx.events}),
	'the writers are appending');
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT ocx.rebuild_projection('balances', shadow => true)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
is($rc, 0, 'a partitioned projection can be rebuilt blue/green') or diag($err);
is($node->safe_psql('postgres', q{
	SELECT string_agg(partition::text, ',' ORDER BY partition)
	       || (SELECT ' ' || (shadow_checkpoint_txid IS NULL) FROM ocx.projections WHERE name = 'balances')
	  FROM ocx.projection_shadow_partitions WHERE projection = 'balances'}),
	'0,1,2,3 true', 'each partition has a shadow checkpoint of its own');

my ($prev_count, $prev_sum) = (0, 0);
my ($reads, $bad, $reads_after, $shadow_reads) = (0, '', 0, 0);
my ($max_units, $max_spread) = (0, 0);
my $swapped_at;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	my ($count, $sum) = split /\|/, $node->safe_psql('postgres',
		q{SELECT count(*), coalesce(sum(events), 0) FROM balances},
		extra_params => [ '-U', 'bg_reader' ]);
	$reads++;
	if ($count == 0 || $count < $prev_count || $sum < $prev_sum)
	{
		$bad .= "read $reads: count $count sum $sum after count $prev_count sum $prev_sum; ";
	}
	($prev_count, $prev_sum) = ($count, $sum);

	my ($shadow, $units, $spread) = split /\|/, $node->safe_psql('postgres', q{
		SELECT shadow_checkpoint IS NOT NULL,
		       (SELECT count(DISTINCT unit) FROM ocx.worker_status()
		         WHERE unit LIKE 'projection (shadow) balances/%'),
		       (SELECT coalesce(max(rebuild_done) - min(rebuild_done), 0)
		          FROM ocx.projection_shadow_partitions WHERE projection = 'balances')
		  FROM ocx.projection_status WHERE name = 'balances'});
	if ($shadow eq 't')
	{
		$shadow_reads++;
		$max_units = $units if $units > $max_units;
		$max_spread = $spread if $spread > $max_spread;
	}
	elsif (!defined $swapped_at)
	{
		$swapped_at = time;
	}
	else
	{
		$reads_after++;
		last if $reads_after >= 20;
	}
	usleep(20_000);
}
ok(defined $swapped_at, 'the shadow rebuild finished and swapped in');
is($bad, '', "the reader never saw the table empty, half or going back ($reads reads, $shadow_reads during the rebuild)");
cmp_ok($shadow_reads, '>=', 10, 'the reader read the live table throughout the rebuild');
cmp_ok($max_units, '>=', 2, "shadow partitions ran in parallel (up to $max_units at once)");
cmp_ok($max_spread, '>', 0, "the shadow partitions moved at their own pace (spread up to $max_spread events)");
$writers->finish;
is($?, 0, 'the writers ran without errors') or diag($werr);

isnt($node->safe_psql('postgres', q{SELECT 'balances'::regclass::oid}), $oid_before,
	'balances is the rebuilt table');
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'balances'}),
	'the projection catches up after the writers stop');
is($node->safe_psql('postgres', $replay_diff), '0', 'the swapped table equals a replay of the log')
  or diag($node->safe_psql('postgres', q{
	SELECT b.account, ocx.stream_partition(b.account, 4), b.balance, b.events, r.balance, r.events
	  FROM balances b FULL JOIN (SELECT stream_id, sum((data->>'n')::bigint) AS balance, count(*) AS events
	                               FROM ocx.events WHERE stream_id LIKE 'acct-%' GROUP BY stream_id) r
	    ON r.stream_id = b.account
	 WHERE (b.balance, b.events) IS DISTINCT FROM (r.balance, r.events)}) . "\n"
	. $node->safe_psql('postgres', q{SELECT * FROM ocx.projection_partitions})
	. "\n" . $node->safe_psql('postgres', q{SELECT events_applied, rebuild_done FROM ocx.projections}));
is($node->safe_psql('postgres', q{
	SELECT (shadow_schema IS NULL) || ',' || (rebuild_finished_at IS NOT NULL) || ','
	       || (SELECT count(*) FROM ocx.projection_shadow_partitions)
	       || ',' || (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%')
	  FROM ocx.projections WHERE name = 'balances'}),
	'true,true,0,0', 'the shadow state, its partitions and its schema are gone');
is($node->safe_psql('postgres', q{
	SELECT events_applied = (SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%')
	  FROM ocx.projection_status WHERE name = 'balances'}),
	't', 'events_applied counts every event once (the rebuild, then the live partitions)');

# --- 2. kill -9 of a pool worker in the middle of a shadow batch -------------
$node->safe_psql('postgres', q{SELECT ocx.rebuild_projection('balances', shadow => true)});
($wout, $werr) = ('', '');
$writers = start_writers(6, \$wout, \$werr);
# the pid in the same query that finds the batch: a batch found by one query
# may have committed before the next one asks for its pid
my $pid = '';
my $pid_until = time + $PostgreSQL::Test::Utils::timeout_default;
while ($pid eq '' && time < $pid_until)
{
	$pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type IN ('ocx worker', 'ocx worker helper') AND state = 'active'
		   AND query LIKE 'ocx worker: projection (shadow) balances/%' AND backend_xid IS NOT NULL LIMIT 1});
	usleep(20_000) if $pid eq '';
}
ok($pid ne '', 'a pool worker is in the middle of a shadow batch (its handler has written)');
my $done_before = $node->safe_psql('postgres', q{
	SELECT coalesce(sum(rebuild_done), 0) FROM ocx.projection_shadow_partitions});
kill 'KILL', $pid;
# the postmaster restarts every process: a psql started meanwhile may find
# no server (its stdin then breaks), so try again until one answers
my $back = 0;
my $until = time + $PostgreSQL::Test::Utils::timeout_default;
{
	local $SIG{PIPE} = 'IGNORE';
	while (!$back && time < $until)
	{
		usleep(200_000);
		$back = eval { $node->safe_psql('postgres', 'SELECT true') eq 't' } // 0;
	}
}
ok($back, "the cluster is back after kill -9 of $pid ($done_before shadow events applied)");
$writers->finish;
ok($node->poll_query_until('postgres', q{
	SELECT shadow_schema IS NULL AND rebuild_finished_at > rebuild_started_at
	  FROM ocx.projections WHERE name = 'balances'}),
	'the rebuild goes on after the crash and swaps in');
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'balances'}),
	'the projection catches up');
is($node->safe_psql('postgres', $replay_diff), '0',
	'after the kill -9 the swapped table still equals a replay of the log');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.dead_letters}), '0', 'no dead letters');

$node->stop;
done_testing();
