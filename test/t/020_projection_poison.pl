# A poison event is retried with backoff, then parked in ocx.dead_letters,
# while another projection over the same events keeps advancing; a handler
# that is dropped does not stop the other projections either.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('poison');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '10s'
max_prepared_transactions = 2
log_error_verbosity = verbose   # SQLSTATEs in the server log (OX202)
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE good_model (pos bigint);
CREATE TABLE picky_model (pos bigint);
CREATE TABLE gone_model (pos bigint);
CREATE FUNCTION good(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.good_model VALUES (e.global_position) $$;
CREATE FUNCTION picky(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Poison' THEN RAISE EXCEPTION 'cannot digest %', e.stream_id; END IF;
    INSERT INTO public.picky_model VALUES (e.global_position);
END $$;
CREATE FUNCTION gone(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.gone_model VALUES (e.global_position) $$;
SELECT ocx.define_projection('good', 'good(ocx.event)');
SELECT ocx.define_projection('picky', 'picky(ocx.event)',
    retry => '{"max_attempts": 3, "base_delay": "1 second", "max_delay": "2 seconds"}');
SELECT ocx.define_projection('gone', 'gone(ocx.event)');
DROP FUNCTION gone(ocx.event);
CREATE FUNCTION halt(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Poison' THEN RAISE EXCEPTION 'cannot digest %', e.stream_id; END IF;
END $$;
SELECT ocx.define_projection('halt', 'halt(ocx.event)',
    retry => '{"max_attempts": 1, "on_exhausted": "stop"}');
});

$node->safe_psql('postgres', q{
SELECT ocx.append('food-1', NULL, '[{"type": "Meal", "data": {}}, {"type": "Poison", "data": {}}, {"type": "Meal", "data": {}}]');
SELECT ocx.append_event('food-2', NULL, 'Meal', '{}');
});

ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'good'}),
	'the healthy projection applies everything');
is($node->safe_psql('postgres', q{SELECT count(*) FROM good_model}), '4', 'all four events');

# the "stop" policy: the projection stops at the poison event, with a WARNING OX202
ok($node->poll_query_until('postgres',
	q{SELECT state = 'stopped' FROM ocx.projection_status WHERE name = 'halt'}),
	'a projection with on_exhausted "stop" stops at the poison event');
my $poison = $node->safe_psql('postgres',
	q{SELECT global_position FROM ocx.events WHERE stream_id = 'food-1' AND type = 'Poison'});
ok($node->wait_for_log(qr/WARNING:  OX202: ocx: projection "halt" stopped at event $poison\b/),
	'and says so in the server log with OX202');
is($node->safe_psql('postgres',
	q{SELECT state || ',' || dead_letters || ',' || (failing_attempts > 0) || ',' || (retry_at IS NOT NULL)
	    FROM ocx.projection_status WHERE name = 'picky'}),
	'running,0,true,true', 'meanwhile the poisoned projection is retrying, nothing parked yet');
is($node->safe_psql('postgres', q{SELECT count(*) FROM picky_model}), '1',
	'it applied the event before the poison');

ok($node->poll_query_until('postgres',
	q{SELECT dead_letters = 1 AND lag_events = 0 FROM ocx.projection_status WHERE name = 'picky'}),
	'after its attempts the poison event is parked and the projection goes on');
is($node->safe_psql('postgres', q{SELECT count(*) FROM picky_model}), '3', 'every other event applied');
is($node->safe_psql('postgres',
	q{SELECT stream_id || ',' || stream_version || ',' || type || ',' || attempts || ',' || error
	    FROM ocx.dead_letters WHERE projection = 'picky'}),
	'food-1,2,Poison,3,cannot digest food-1', 'the dead letter says what failed and how often');
ok($node->log_contains(qr/projection "picky" parked event/), 'the server log says so too');

# the projection whose handler was dropped reports it and holds its place
ok($node->poll_query_until('postgres',
	q{SELECT last_error IS NOT NULL FROM ocx.projection_status WHERE name = 'gone'}),
	'a projection whose handler is gone shows the error');
is($node->safe_psql('postgres',
	q{SELECT state || ',' || events_applied || ',' || lag_events FROM ocx.projection_status WHERE name = 'gone'}),
	'running,0,4', 'and keeps its events for when the handler is back');
$node->safe_psql('postgres', q{
CREATE FUNCTION gone(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.gone_model VALUES (e.global_position) $$;
SELECT ocx.append_event('food-3', NULL, 'Meal', '{}');
});
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'gone'}),
	'with the handler back it catches up');
is($node->safe_psql('postgres', q{SELECT count(*) FROM gone_model}), '5', 'all five events');

# COMMIT PREPARED of an appending transaction wakes the worker too.  The naptime
# goes up to 1 hour first (the reload's SIGHUP wakes the worker, which then sleeps
# with it), so an apply within the minute allowed below is the commit's wake-up,
# however slow the machine
$node->append_conf('postgresql.conf', "ocx.naptime = '1h'");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT current_setting('ocx.naptime') = '1h'}),
	'the naptime is 1 hour');
$node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.append_event('food-4', NULL, 'Meal', '{}');
PREPARE TRANSACTION 'meal';
});
my $t0 = time();
$node->safe_psql('postgres', q{COMMIT PREPARED 'meal'});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 6 FROM good_model}),
	'a prepared append is applied after COMMIT PREPARED');
cmp_ok(time() - $t0, '<', 60, 'woken by the commit, not by the naptime (1 hour)');

$node->stop;
done_testing();
