# Issue 11, item 3: an event whose upcaster fails (a poison event) is a dead
# letter of the projection that wants it, per its retry policy, and the
# projection goes on; a projection filtered to other types never upcasts it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('poison_upcast');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE all_model (pos bigint, n jsonb);
CREATE TABLE other_model (pos bigint);
CREATE FUNCTION all_events(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.all_model VALUES (e.global_position, e.data -> 'n') $$;
CREATE FUNCTION other_events(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.other_model VALUES (e.global_position) $$;
SELECT ocx.define_event_type('U', 2);
SELECT ocx.define_upcaster('U', 1, spec => '{"op":"cast","path":"n","to":"integer"}');
SELECT ocx.define_projection('everything', 'all_events(ocx.event)',
    retry => '{"max_attempts": 2, "base_delay": "100 milliseconds", "max_delay": "200 milliseconds"}');
SELECT ocx.define_projection('others', 'other_events(ocx.event)', types => ARRAY['Other']);
});

$node->safe_psql('postgres', q{
SELECT ocx.append('u-1', NULL, '[{"type":"U","schema_version":1,"data":{"n":"1"}}]');
SELECT ocx.append('u-2', NULL, '[{"type":"U","schema_version":1,"data":{"n":"NaN"}}]');
SELECT ocx.append('u-3', NULL, '[{"type":"Other","data":{}}, {"type":"U","schema_version":1,"data":{"n":"3"}}]');
});

ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'others'}),
	'a projection filtered to other types is not stopped by the poison event');
is($node->safe_psql('postgres', q{SELECT count(*) FROM other_model}), '1', 'it applied its event');

ok($node->poll_query_until('postgres',
	q{SELECT dead_letters = 1 AND lag_events = 0 FROM ocx.projection_status WHERE name = 'everything'}),
	'the all-events projection dead-letters the poison event after its attempts and goes on');
is($node->safe_psql('postgres',
	q{SELECT string_agg(n::text, ',' ORDER BY pos) FROM all_model}),
	'1,3', 'every other event applied, upcast (integers)');
is($node->safe_psql('postgres',
	q{SELECT stream_id || ',' || type || ',' || attempts || ',' || sqlstate || ',' || error
	    FROM ocx.dead_letters WHERE projection = 'everything'}),
	'u-2,U,2,OX121,could not cast "n" while upcasting event type "U"',
	'the dead letter says the upcaster failed');
is($node->safe_psql('postgres',
	q{SELECT state FROM ocx.projection_status WHERE name = 'everything'}),
	'running', 'the projection is still running');

# the stored form stays readable for everyone
is($node->safe_psql('postgres',
	q{SELECT data ->> 'n' FROM ocx.read_all(NULL, NULL, upcast => false) WHERE stream_id = 'u-2'}),
	'NaN', 'read_all(upcast => false) reads the stored form');

# with the upcaster fixed, the dead letter can be retried
$node->safe_psql('postgres', q{
SELECT ocx.define_upcaster('U', 1, spec => '[{"op":"default","path":"x","value":0}]');
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'everything';
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM all_model WHERE n IS NOT NULL}), '3', 'retried once the upcaster is fixed');

$node->stop;
done_testing();
