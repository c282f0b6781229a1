# A partitioned log under load (issue 15, "Partition archive under load";
# docs/scaling.md, "A partitioned log"): writers append (10% of their
# transactions rolled back) while the worker creates partitions ahead and
# ocx.archive() moves the old ones to the archive behind a projection.
# Nothing is lost: the log (live and archived) holds exactly what the writers
# committed, every stream gap-free at the version its writers saw; read_all
# with include_archived reads every event once, in log order, across the
# boundary; the projection's read model equals a replay of the whole log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('archive_load');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '200ms'
ocx.batch_size = 200
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE ledger (stream_id text, version bigint);
CREATE TABLE model (stream_id text, stream_version bigint, n int, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.model VALUES (e.stream_id, e.stream_version, (e.data->>'n')::int, e.global_position) $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
-- history before the conversion: the first partition
SELECT count(ocx.append('acct-' || (i % 20), NULL, '{"type": "Opened", "data": {"n": 0}}'))
  FROM generate_series(1, 100) i;
INSERT INTO ledger SELECT 'acct-' || (i % 20), NULL FROM generate_series(1, 100) i;
-- archive behind the projection (the caller seals first, in a transaction
-- of its own: the seals gate it too); refused (OX682) while the projection
-- has not passed a used-up partition
CREATE FUNCTION try_archive() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RETURN ocx.archive((SELECT ocx.cursor(p.checkpoint_txid, p.checkpoint_position)
                          FROM ocx.projections p WHERE p.name = 'model'));
EXCEPTION WHEN SQLSTATE 'OX682' THEN
    RETURN 0;
END $$;
});
is($node->safe_psql('postgres', 'SELECT ocx.partition_log(500, 6)'),
	'ocx: log partitioned by global_position, 500 positions a partition', 'the log is partitioned');
my $parts_before = $node->safe_psql('postgres', 'SELECT count(*) FROM ocx.log_partitions()');

# writers: two events per transaction, the version they got recorded in the same transaction
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 40)
\set r random(1, 10)
BEGIN;
SELECT ocx.append('acct-' || :s, NULL, jsonb_build_array(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', :r)), jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('n', -:r)))) AS v \gset
INSERT INTO ledger VALUES ('acct-' || :s, :v - 1), ('acct-' || :s, :v);
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
});
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '1500', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);

# while they write: archive what the projection has passed, again and again
my ($tries, $archived_during) = (0, 0);
while ($bench->pumpable)
{
	$node->safe_psql('postgres', 'SELECT ocx.seal()');
	$archived_during += $node->safe_psql('postgres', 'SELECT try_archive()');
	$tries++;
	usleep(300_000);
	$bench->pump_nb;
}
$bench->finish;
is($bench->result(0), 0, 'the writers finished without an error') or diag("$out\n$err");
diag("archive calls during the load: $tries, partitions archived: $archived_during");
cmp_ok($archived_during, '>', 0, 'partitions were archived while the writers appended');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM ocx.log_partitions()'), '>', $parts_before + 3,
	'the worker created partitions ahead during the load');

# the projection catches up; what it passed can go too
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
	'the projection catches up');
$node->safe_psql('postgres', 'SELECT ocx.seal()');
ok($node->poll_query_until('postgres', q{SELECT try_archive() >= 0 AND
    (SELECT count(*) FROM ocx_archive.events) > 0}), 'an archive after the load');

# nothing lost: the log holds what the writers committed
is($node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM ocx.events) + (SELECT count(*) FROM ocx_archive.events)
       = (SELECT count(*) FROM ledger)}), 't', 'live and archived events: as many as the writers committed');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
  (SELECT stream_id, stream_version FROM ocx.read_all(NULL, NULL, include_archived => true)
   EXCEPT ALL
   SELECT stream_id, row_number() OVER (PARTITION BY stream_id) FROM ledger)
  UNION ALL
  (SELECT stream_id, row_number() OVER (PARTITION BY stream_id) FROM ledger
   EXCEPT ALL
   SELECT stream_id, stream_version FROM ocx.read_all(NULL, NULL, include_archived => true))) d}),
	'0', 'every stream is gap-free from 1 to as many events as its writers committed');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT stream_id, max(version) AS v FROM ledger WHERE version IS NOT NULL GROUP BY 1) l
  JOIN ocx.streams s USING (stream_id) WHERE s.version <> l.v}), '0',
	'each stream ends at the last version a writer committed');

# read_all with include_archived: every event once, in log order, across the boundary
my $read = $node->safe_psql('postgres', q{
SELECT count(*), count(DISTINCT global_position),
       bool_and(after_prev),
       bool_or(archived) AND bool_or(NOT archived)
  FROM (SELECT r.global_position,
               r."cursor" OPERATOR(ocx.>) lag(r."cursor") OVER (ORDER BY n) IS NOT FALSE AS after_prev,
               r.global_position < (SELECT min(global_position) FROM ocx.events) AS archived
          FROM ocx.read_all(NULL, NULL, include_archived => true) WITH ORDINALITY r
               (global_position, stream_id, stream_version, event_id, source, type, schema_version,
                time, data, metadata, correlation_id, causation_id, tenant_id, txid, "cursor", n)) x});
my $total = $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
is($read, "$total|$total|t|t", 'read_all(include_archived): every event once, in log order, archived and live');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_all(NULL, NULL)}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events}), 'read_all without the archive: the live log');

# the projection's read model equals a replay of the whole log
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
  (SELECT stream_id, stream_version, n, pos FROM model
   EXCEPT ALL
   SELECT stream_id, stream_version, (data->>'n')::int, global_position
     FROM ocx.read_all(NULL, NULL, NULL, '{acct}', include_archived => true))
  UNION ALL
  (SELECT stream_id, stream_version, (data->>'n')::int, global_position
     FROM ocx.read_all(NULL, NULL, NULL, '{acct}', include_archived => true)
   EXCEPT ALL
   SELECT stream_id, stream_version, n, pos FROM model)) d}), '0',
	'the read model equals a replay of the live and archived log, every event applied once');

# pg_dump and pg_restore: the restored partitions are attached again by ocx.partition_log()
my $dump = $node->basedir . '/log.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-h', $node->host, '-p', $node->port, 'postgres' ],
	'pg_dump of the partitioned, archived log');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
# the ATTACH PARTITION statements to the extension's plain ocx.events fail (docs/scaling.md)
$node->command_fails([ 'pg_restore', '-d', 'restored', '-h', $node->host, '-p', $node->port, $dump ],
	'pg_restore reports the partitions it could not attach');
is($node->safe_psql('restored', 'SELECT ocx.partition_log()'), 'ocx: restored partitioned log attached again',
	'ocx.partition_log() after the restore attaches the restored partitions');
my $content = q{SELECT count(*) || ':' || md5(string_agg(stream_id || '/' || stream_version || '/' || event_id || '/' || global_position, ',' ORDER BY n))
  FROM ocx.read_all(NULL, NULL, include_archived => true) WITH ORDINALITY r
       (global_position, stream_id, stream_version, event_id, source, type, schema_version,
        time, data, metadata, correlation_id, causation_id, tenant_id, txid, "cursor", n)};
is($node->safe_psql('restored', $content), $node->safe_psql('postgres', $content),
	'the restored log reads the same events, live and archived, in the same order');
is($node->safe_psql('restored', q{SELECT (SELECT count(*) FROM ocx.events) || '/' || (SELECT count(*) FROM ocx_archive.events)}),
	$node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM ocx.events) || '/' || (SELECT count(*) FROM ocx_archive.events)}),
	'as many live and archived events');
my ($rc, $o, $e) = $node->psql('restored', q{
SELECT ocx.append('acct-1', 1, '{"type": "Late", "data": {"n": 1}}')});
like($e, qr/wrong expected version/, 'the restored log refuses a version it holds');
is($node->safe_psql('restored', q{SELECT ocx.append('acct-1', ocx.stream_version('acct-1'), '{"type": "After", "data": {"n": 1}}') > 0}),
	't', 'the restored log takes appends');

# appends go on after the archive
is($node->safe_psql('postgres', q{SELECT ocx.append('acct-1', ocx.stream_version('acct-1'), '{"type": "After", "data": {"n": 1}}') > 0}),
	't', 'appends go on');

$node->stop;
done_testing();
