# The log survives crashes; prepared transactions hold back read_all (and
# never lose their events) across a restart; reads work on a hot standby.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
max_prepared_transactions = 5
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx');

# 50 committed appends
$node->safe_psql('postgres', q{
DO $$ BEGIN
  FOR i IN 1..50 LOOP
    PERFORM ocx.append_event('acct-1', i - 1, 'Deposited', jsonb_build_object('n', i));
  END LOOP;
END $$});

# an append left uncommitted at the crash
my $bg = $node->background_psql('postgres');
$bg->query_safe(q{BEGIN});
$bg->query_safe(q{SELECT ocx.append_event('acct-1', 50, 'Lost', '{}')});

# an append in a prepared transaction
$node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.append_event('prep-1', 0, 'Prepared', '{}');
PREPARE TRANSACTION 'p1';
});
# a later append, committed
$node->safe_psql('postgres', q{SELECT ocx.append_event('late-1', 0, 'Late', '{}')});

$node->stop('immediate');
$bg->{run}->kill_kill;
$node->start;

is($node->safe_psql('postgres', q{SELECT ocx.stream_version('acct-1')}), '50',
   'committed appends survive a crash');
is($node->safe_psql('postgres',
     q{SELECT count(*) FROM ocx.events WHERE stream_id = 'acct-1' AND type = 'Lost'}), '0',
   'the uncommitted append is gone');
is($node->safe_psql('postgres',
     q{SELECT string_agg((data->>'n'), ',' ORDER BY stream_version) = string_agg(stream_version::text, ',' ORDER BY stream_version) FROM ocx.read_stream('acct-1')}),
   't', 'versions are contiguous after recovery');
is($node->safe_psql('postgres', q{SELECT ocx.append_event('acct-1', 50, 'Deposited', '{"n": 51}')}),
   '51', 'the stream continues at the right version');

# the prepared transaction survived the restart and still holds read_all back
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_prepared_xacts}), '1',
   'prepared transaction survives restart');
is($node->safe_psql('postgres',
     q{SELECT count(*) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['late','prep'])}), '0',
   'read_all does not pass the prepared transaction');
$node->safe_psql('postgres', q{COMMIT PREPARED 'p1'});
is($node->safe_psql('postgres',
     q{SELECT string_agg(type, ',') FROM ocx.read_all(NULL, NULL, NULL, ARRAY['late','prep'])}),
   'Prepared,Late', 'after COMMIT PREPARED both show, the older transaction first');

# reads on a hot standby
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', q{SELECT ocx.append_event('acct-1', 51, 'Deposited', '{"n": 52}')});
$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
is($standby->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_stream('acct-1')}), '52',
   'read_stream works on a hot standby');
is($standby->safe_psql('postgres', q{SELECT ocx.stream_version('acct-1')}), '52',
   'stream_version works on a hot standby');
ok($standby->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_all(NULL, NULL)}) >= 52,
   'read_all works on a hot standby');
my ($rc, $out, $err) = $standby->psql('postgres', q{SELECT ocx.append_event('acct-1', 52, 'X', '{}')});
isnt($rc, 0, 'appending on a standby fails');
like($err, qr/cannot execute append_event in a read-only transaction/, 'with the read-only error');

$standby->stop;
$node->stop;
done_testing();
