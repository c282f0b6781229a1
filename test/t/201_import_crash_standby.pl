# The bulk import through a crash and on a standby (issue 16, as an operator
# sees it).  An import that committed is on the streaming standby as on the
# primary, row for row.  An import killed halfway (the server crashes while
# import_commit has written some thousands of rows: a trigger on ocx.events
# makes it wait at a known row) leaves nothing after the restart: no event,
# no stream row, no data key, nothing staged; the log verifies; the same
# batch imports again; appends go on; and the standby follows all of it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('import_primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '200ms'
});
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION ocx});
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('import_standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;

# a batch of $n events: streams imp-0 .. imp-99, versions from $from + 1 in line order
sub import_sql
{
	my ($n, $from, $tail) = @_;
	return qq{
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data, tags)
SELECT 'imp-' || (g % 100), (g / 100 + $from + 1)::text, 'Imported', jsonb_build_object('n', g)::text,
       '["batch", "n:' || g || '"]'
  FROM generate_series(0, $n - 1) g ORDER BY g / 100, g % 100;
SELECT events FROM ocx.import_commit();
$tail};
}

# the log as a digest: every event's stream, version, type, data and hash, in log order
my $digest = q{
SELECT count(*) || ' ' || md5(string_agg(format('%s/%s %s %s %s', stream_id, stream_version, type, data,
                                                encode(hash, 'hex')), ',' ORDER BY txid, global_position))
  FROM ocx.events};

$node->safe_psql('postgres', q{SELECT ocx.append_event('before-1', NULL, 'Opened', '{}')});
is((split /\n/, $node->safe_psql('postgres', import_sql(20000, 0, 'COMMIT;')))[-1], '20000',
	'a batch of 20,000 events is imported');
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', $digest), $node->safe_psql('postgres', $digest),
	'the standby holds the imported events row for row (data, order, hashes)');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM ocx.streams WHERE stream_id LIKE 'imp-%'}), '100',
	'and their stream rows');

# crash halfway through the second batch (versions 201 to 400): a trigger
# waits at its 4,901st row (stream imp-0, version 250)
$node->safe_psql('postgres', q{
CREATE TABLE crash_gate (armed boolean);
INSERT INTO crash_gate VALUES (true);
-- the import writes as ocx_owner: the trigger reads its gate as its author
CREATE FUNCTION crash_wait() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NEW.stream_id = 'imp-0' AND NEW.stream_version = 250 AND (SELECT armed FROM crash_gate) THEN
        PERFORM pg_sleep(300);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER crash_wait BEFORE INSERT ON ocx.events FOR EACH ROW EXECUTE FUNCTION crash_wait();
});
my $before = $node->safe_psql('postgres', $digest);
my $seq_before = $node->safe_psql('postgres', q{SELECT last_value FROM ocx.events_global_position_seq});
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/importing/, "\\echo importing\n" . import_sql(20000, 200, 'COMMIT;') . "\n");
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%import_commit%'}),
	'the import waits in the middle of its batch (the rows before are written, uncommitted)');
cmp_ok($node->safe_psql('postgres', q{SELECT last_value FROM ocx.events_global_position_seq}) - $seq_before, '>=', 4900,
	'it has taken log positions for thousands of rows');
$node->stop('immediate');
eval { $bg->quit };
$node->start;

is($node->safe_psql('postgres', $digest), $before, 'after the crash the log is as before the import: nothing of it');
is($node->safe_psql('postgres', q{SELECT max(version) FROM ocx.streams WHERE stream_id LIKE 'imp-%'}), '200',
	'the stream rows are those of the first batch');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.import_staging}), '0', 'nothing is left staged');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean');

# the same batch again (continuing the streams), and an append after it
$node->safe_psql('postgres', q{UPDATE crash_gate SET armed = false});
is((split /\n/, $node->safe_psql('postgres', import_sql(20000, 200, 'COMMIT;')))[-1],
	'20000', 'the batch imports after the restart');
is($node->safe_psql('postgres', q{SELECT ocx.append_event('imp-0', 400, 'Appended', '{}')}), '401',
	'an append continues an imported stream');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_tagged('{batch}', max_count => 100000)}), '40000',
	'the tags of both batches read (the all-tags lock of a 20,000-tag batch)');

$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', $digest), $node->safe_psql('postgres', $digest),
	'the standby followed the crash, the second import and the append');

$standby->stop;
$node->stop;
done_testing();
