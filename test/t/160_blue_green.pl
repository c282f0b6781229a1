# Blue/green rebuild (rebuild_projection(name, shadow => true)) under load:
# while writers append and a reader repeatedly reads the read model, the
# shadow replay builds a new table and swaps it in.  The reader never sees
# the table empty or going back (count and sum only grow), the live
# projection keeps applying events during the rebuild, the swapped table
# equals a replay of the log, and privileges granted on the live table
# survive the swap.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $node = PostgreSQL::Test::Cluster->new('bluegreen');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
ocx.batch_size = 200
});
$node->start;

# The handler names its table unqualified: during the shadow replay it finds
# the shadow copy first in its search_path.  It is slow only then (it sees
# ocx.projection_schema set), so that the rebuild takes a while.
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE bg_reader LOGIN;
CREATE TABLE balances (account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL);
CREATE INDEX balances_balance ON balances (balance);
COMMENT ON TABLE balances IS 'account balances';
CREATE FUNCTION apply_balance(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ocx.projection_schema') <> '' THEN
        PERFORM pg_sleep(0.0005);
    END IF;
    INSERT INTO balances AS b VALUES (e.stream_id, (e.data->>'n')::bigint, 1)
    ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance, events = b.events + 1;
END $$;
SELECT ocx.define_projection('balances', 'apply_balance(ocx.event)', categories => '{acct}',
                             tables => '{balances}');
SELECT ocx.append('acct-' || (i % 300), NULL, jsonb_build_array(
         jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', i % 7))))
  FROM generate_series(1, 4000) i;
GRANT SELECT ON balances TO bg_reader;
GRANT UPDATE (balance) ON balances TO bg_reader;
});
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'balances'}),
	'the live projection catches up with 4000 events');
my $acl_sql = q{SELECT (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM aclexplode(c.relacl) a)
     || ' cols:' || (SELECT string_agg(at.attname || '=' || at.attacl::text, ',' ORDER BY at.attname)
                       FROM pg_attribute at WHERE at.attrelid = c.oid AND at.attacl IS NOT NULL)
     || ' owner:' || c.relowner::regrole || ' comment:' || obj_description(c.oid, 'pg_class')
     || ' indexes:' || (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
  FROM pg_class c WHERE c.oid = 'balances'::regclass};
my $acl_before = $node->safe_psql('postgres', $acl_sql);
my $oid_before = $node->safe_psql('postgres', q{SELECT 'balances'::regclass::oid});

# writers: two clients appending for a while, rate-limited
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(0, 299)
\set n random(1, 9)
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', jsonb_build_object('n', :n));
});
my ($wout, $werr) = ('', '');
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '12', '-R', '150', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$wout, '2>', \$werr);

# let the writers start, then start the rebuild
ok($node->poll_query_until('postgres',
	q{SELECT count(*) > 4000 FROM ocx.events}), 'the writers are appending');
$node->safe_psql('postgres', q{SELECT ocx.rebuild_projection('balances', shadow => true)});

# the reader loop, as bg_reader, through the rebuild and the swap; meanwhile
# watch the live projection
my ($prev_count, $prev_sum) = (0, 0);
my ($reads, $bad, $max_lag, $reads_after) = (0, '', 0, 0);
my ($applied_at_start, $applied_during) = (undef, 0);
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

	my ($lag, $applied, $shadow) = split /\|/, $node->safe_psql('postgres',
		q{SELECT lag_events, events_applied, shadow_checkpoint IS NOT NULL
		    FROM ocx.projection_status WHERE name = 'balances'});
	if ($shadow eq 't')
	{
		$applied_at_start //= $applied;
		$applied_during = $applied - $applied_at_start;
		$max_lag = $lag if $lag > $max_lag;
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
}
ok(defined $swapped_at, 'the shadow rebuild finished and swapped in');
is($bad, '', "the reader never saw the table empty or going back ($reads reads)");
cmp_ok($reads_after, '>=', 20, 'the reader went on reading after the swap');
cmp_ok($applied_during, '>', 0,
	"the live projection applied events during the rebuild ($applied_during)");
cmp_ok($max_lag, '<', 1000, "the live projection's lag stayed small during the rebuild (max $max_lag)");
note("reads: $reads, max lag during the rebuild: $max_lag, live events applied meanwhile: $applied_during");

$writers->finish;
is($?, 0, 'the writers ran without errors') or diag($werr);

# the new table: another relation, a replay of the log, same privileges
isnt($node->safe_psql('postgres', q{SELECT 'balances'::regclass::oid}), $oid_before,
	'balances is the rebuilt table');
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'balances'}),
	'the projection catches up after the writers stop');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
    (SELECT account, balance, events FROM balances
     EXCEPT ALL
     SELECT stream_id, sum((data->>'n')::bigint), count(*) FROM ocx.events
      WHERE stream_id LIKE 'acct-%' GROUP BY stream_id)
    UNION ALL
    (SELECT stream_id, sum((data->>'n')::bigint), count(*) FROM ocx.events
      WHERE stream_id LIKE 'acct-%' GROUP BY stream_id
     EXCEPT ALL
     SELECT account, balance, events FROM balances)) d}),
	'0', 'the swapped table equals a replay of the log');
is($node->safe_psql('postgres', $acl_sql), $acl_before,
	'privileges (table and column), owner, comment and indexes survive the swap');
is($node->safe_psql('postgres', q{SELECT ocx.cursor(checkpoint_txid, checkpoint_position)::text
    || (shadow_schema IS NULL) || (rebuild_finished_at IS NOT NULL) || rebuild_done
    FROM ocx.projections WHERE name = 'balances'}) =~ /truetrue\d+$/ ? 1 : 0, 1,
	'the shadow state is cleared and the rebuild finished');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%'}),
	'0', 'no shadow schema is left');
my $reader_update = $node->psql('postgres', q{UPDATE balances SET balance = balance WHERE false},
	extra_params => [ '-U', 'bg_reader' ]);
is($reader_update, 0, 'the column grant works on the new table');

$node->stop;
done_testing();
