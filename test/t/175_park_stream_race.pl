# Order-preserving dead letters under load: while writers append to six
# streams, events of three of them keep failing (on_failure park_stream) and
# are retried by an operator as the worker's batches run.  At the end every
# event is applied exactly once and each stream's events in log order (the
# order every projection applies them in), with nothing held back.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('park');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (seq bigserial PRIMARY KEY, stream_id text, version bigint);
CREATE TABLE broken (stream_id text, version bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM public.broken b WHERE b.stream_id = e.stream_id AND b.version = e.stream_version) THEN
        RAISE EXCEPTION 'broken %/%', e.stream_id, e.stream_version;
    END IF;
    PERFORM pg_sleep(0.002);   -- batches that last: retries land while they run
    INSERT INTO public.model (stream_id, version) VALUES (e.stream_id, e.stream_version);
END $$;
SELECT ocx.define_projection('park', 'apply(ocx.event)',
    retry => '{"max_attempts": 1, "on_failure": "park_stream"}');
INSERT INTO broken SELECT 'a-' || s, v FROM generate_series(1, 3) s, generate_series(3, 400, 7) v;
});

my $script = $node->basedir . '/append.sql';
open(my $fh, '>', $script) or die;
print $fh q{\set s random(1, 6)
SELECT ocx.append(CASE WHEN :s <= 3 THEN 'a-' || :s ELSE 'b-' || (:s - 3) END, NULL,
                  '{"type": "E", "data": {}}');
};
close($fh);

my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '8', '-R', '250', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \my $out, '2>', \my $err);

# the operator: fix what is parked and retry it, again and again, while the
# writers write and the worker runs its batches
my ($retried, $held_seen) = (0, 0);
my $deadline = time() + 8;
while (time() < $deadline)
{
	$held_seen = 1 if $node->safe_psql('postgres',
		q{SELECT count(*) FROM ocx.dead_letters WHERE state = 'held'}) > 0;
	$retried += $node->safe_psql('postgres', q{
DELETE FROM broken b USING ocx.dead_letters d
 WHERE d.state = 'parked' AND b.stream_id = d.stream_id AND b.version = d.stream_version;
SELECT count(ocx.retry_dead_letter(d.id)) FROM ocx.dead_letters d WHERE d.state = 'parked'});
	usleep(200_000);
}
$writers->finish;
is($writers->result(0), 0, 'the writers ran') or diag($err);
ok($retried > 0, "dead letters were retried while the worker ran ($retried)");
ok($held_seen, 'events were held back behind them');

# the end: nothing broken, every dead letter retried, the projection caught up
$node->safe_psql('postgres', 'DELETE FROM broken');
my $flows = 0;
$deadline = time() + 120;
while (!$flows && time() < $deadline)
{
	$node->safe_psql('postgres',
		q{SELECT count(ocx.retry_dead_letter(d.id)) FROM ocx.dead_letters d WHERE d.state = 'parked'});
	$flows = $node->safe_psql('postgres', q{
SELECT lag_events = 0 AND retry_at IS NULL
       AND NOT EXISTS (SELECT FROM ocx.dead_letters WHERE state IN ('parked', 'held'))
  FROM ocx.projection_status WHERE name = 'park'}) eq 't';
	usleep(100_000) unless $flows;
}
ok($flows, 'every stream flows again');

is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
    (SELECT stream_id, stream_version FROM ocx.events EXCEPT ALL SELECT stream_id, version FROM model)
    UNION ALL
    (SELECT stream_id, version FROM model EXCEPT ALL SELECT stream_id, stream_version FROM ocx.events)) d}),
	'0', 'every event applied exactly once');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
    SELECT (e.txid, e.global_position) < lag((e.txid, e.global_position)) OVER (PARTITION BY m.stream_id ORDER BY m.seq) AS back
      FROM model m JOIN ocx.events e ON e.stream_id = m.stream_id AND e.stream_version = m.version) x
 WHERE back}),
	'0', 'each stream in log order');
my $events = $node->safe_psql('postgres', 'SELECT count(*) FROM ocx.events');
ok($events > 200, "under load ($events events)");

$node->stop;
done_testing();
