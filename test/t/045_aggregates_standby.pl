# Aggregates on a hot standby: loads work (from the snapshots replicated from
# the primary), never write a snapshot, and ocx.snapshot refuses with OX104;
# definition changes on the primary reach the standby's definition cache.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('agg_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION ocx');

$primary->safe_psql('postgres', q{
SELECT ocx.define_aggregate('acct', reducer => '{"Deposited": [{"add": "balance", "from": "amount"}]}',
                            initial_state => '{"balance": 0}', snapshot_every => 10);
SELECT ocx.append('acct-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited',
                                  'data', jsonb_build_object('amount', i)))
                                  FROM generate_series(1, 25) i));
SELECT ocx.load('acct', 'acct-1', 20);   -- stores a snapshot at 20
});

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('agg_standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', q{SELECT state->>'balance' FROM ocx.load('acct', 'acct-1')}),
   '325', 'load works on the standby');
is($standby->safe_psql('postgres',
     q{SELECT 1 FROM ocx.load('acct', 'acct-1'); SELECT snapshot_version || '/' || replayed || '/' || snapshot_saved FROM ocx.last_load()}),
   "1\n20/5/false", 'it starts from the replicated snapshot and stores none');

my ($rc, $out, $err) = $standby->psql('postgres',
    q{\set VERBOSITY verbose
      SELECT ocx.snapshot('acct', 'acct-1')});
like($err, qr/OX104/, 'ocx.snapshot on a standby is OX104');

# a new contract and upcaster defined on the primary reach the standby's cache
$standby->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_stream('acct-1')});
$primary->safe_psql('postgres', q{
SELECT ocx.define_event_type('Deposited', 2);
SELECT ocx.define_upcaster('Deposited', 1, spec => '{"op": "default", "path": "currency", "value": "EUR"}');
});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres',
     q{SELECT schema_version || ' ' || (data->>'currency') FROM ocx.read_stream('acct-1', 1, 1)}),
   '2 EUR', 'upcasters defined on the primary apply on the standby');

# the upcaster changed what the aggregate sees: the old snapshot is not used
is($standby->safe_psql('postgres',
     q{SELECT 1 FROM ocx.load('acct', 'acct-1'); SELECT snapshot_version || '/' || replayed FROM ocx.last_load()}),
   "1\n0/25", 'snapshots taken before an upcaster change are not used');

done_testing();
