# Differential test of the projection paths: one handler, defined three
# times over the same log (inline, in the appending transaction; async, in
# the worker; async with 4 partitions), fed by 1,500 seeded random appends
# from two sessions at once (batches, expected versions that conflict,
# batches that a contract refuses, explicit transactions that roll back) and
# by a bulk import.  Once the worker has caught up, the three read models are
# the same, and each applied every committed event exactly once, in its
# stream's order.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;
use IPC::Run;

my $seed = fuzz_seed();

my $node = PostgreSQL::Test::Cluster->new('projection_differential');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
SELECT ocx.define_event_type('Typed', 1, '{"type": "object", "required": ["n"]}');
CREATE TABLE model (projection text, stream_id text, stream_version bigint, n bigint, seen bigint NOT NULL DEFAULT 1,
                    PRIMARY KEY (projection, stream_id, stream_version));
CREATE TABLE last_seen (projection text, stream_id text, version bigint, PRIMARY KEY (projection, stream_id));
-- the handler: a row per event (a second delivery counts in "seen"), and
-- the stream's order checked (a version that does not follow raises)
CREATE FUNCTION apply_event(p text, e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
DECLARE prev bigint;
BEGIN
    SELECT version INTO prev FROM public.last_seen WHERE projection = p AND stream_id = e.stream_id;
    IF coalesce(prev, 0) + 1 <> e.stream_version THEN
        RAISE EXCEPTION '% got version % of % after %', p, e.stream_version, e.stream_id, prev;
    END IF;
    INSERT INTO public.last_seen VALUES (p, e.stream_id, e.stream_version)
        ON CONFLICT (projection, stream_id) DO UPDATE SET version = EXCLUDED.version;
    INSERT INTO public.model VALUES (p, e.stream_id, e.stream_version, (e.data->>'n')::bigint)
        ON CONFLICT (projection, stream_id, stream_version) DO UPDATE SET seen = model.seen + 1;
END $$;
CREATE FUNCTION p_inline(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT public.apply_event('inline', e) $$;
CREATE FUNCTION p_async(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT public.apply_event('async', e) $$;
CREATE FUNCTION p_parts(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT public.apply_event('parts', e) $$;
SELECT ocx.define_projection('p_inline', 'p_inline(ocx.event)', categories => '{dp}', mode => 'inline');
SELECT ocx.define_projection('p_async', 'p_async(ocx.event)', categories => '{dp}');
SELECT ocx.define_projection('p_parts', 'p_parts(ocx.event)', categories => '{dp}', partitions => 4);
});
# the inline projection runs once it has caught up (in the worker)
$node->poll_query_until('postgres', q{SELECT state = 'running' FROM ocx.projections WHERE name = 'p_inline'})
  or die 'the inline projection did not start';


# two sessions of random appends at once
my @scripts;
for my $s (1 .. 2)
{
	my $sql = "\\set ON_ERROR_STOP 0\n";
	for my $i (1 .. 750)
	{
		my $stream = 'dp-' . int(rand(30));
		my $events = '[' . join(', ', map {
			pick('{"type": "A", "data": {"n": ' . int(rand(1000)) . '}}', '{"type": "Typed", "data": {"n": 5}}',
				'{"type": "Typed", "data": {"x": 1}}')
		} 1 .. pick(1, 1, 2, 4)) . ']';
		my $call = "SELECT ocx.append('$stream', " . pick('NULL', 'NULL', int(rand(10))) . ", '$events');";
		$sql .= rand() < 0.1 ? "BEGIN;\n$call\nROLLBACK;\n" : "$call\n";
	}
	push @scripts, $sql;
}
my @runs = map {
	my ($out, $err) = ('', '');
	[ IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ], '<', \$scripts[$_], '>', \$out, '2>', \$err) ]
} 0 .. 1;
$_->[0]->finish for @runs;

# and a bulk import of 500 events to new streams of the category
$node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data)
SELECT 'dp-imp-' || (g % 10), (g / 10 + 1)::text, 'A', jsonb_build_object('n', g)::text
  FROM generate_series(0, 499) g ORDER BY g;
SELECT * FROM ocx.import_commit();
COMMIT;
});

my $events = $node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'dp-%'});
cmp_ok($events, '>', 1000, "the log holds $events events of the category");
ok($node->poll_query_until('postgres', qq{
SELECT (SELECT count(*) FROM model WHERE projection = 'async') = $events
   AND (SELECT count(*) FROM model WHERE projection = 'parts') = $events}),
	'the async projections caught up');
is($node->safe_psql('postgres', q{SELECT count(*) FROM model WHERE projection = 'inline'}), $events,
	'the inline projection applied every committed event (none of a rolled-back or refused append)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM model WHERE seen <> 1}), '0', 'each exactly once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.dead_letters}), '0',
	'no handler saw a version out of its stream\'s order (no dead letter)');
my $model = q{SELECT string_agg(format('%s/%s %s', stream_id, stream_version, n), ',' ORDER BY stream_id, stream_version)
  FROM model WHERE projection = };
is($node->safe_psql('postgres', "$model 'async'"), $node->safe_psql('postgres', "$model 'inline'"),
	'the async read model is the inline one');
is($node->safe_psql('postgres', "$model 'parts'"), $node->safe_psql('postgres', "$model 'inline'"),
	'so is the one of the partitioned projection');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM ocx.events e WHERE e.stream_id LIKE 'dp-%'
   AND NOT EXISTS (SELECT FROM model m WHERE m.projection = 'inline' AND m.stream_id = e.stream_id
                                          AND m.stream_version = e.stream_version)}), '0',
	'and they hold every event of the log');

$node->stop;
done_testing();
