# Projections on a logical-replication subscriber of ocx.events (issue 15).
# With ocx.set_logical_subscriber() the subscriber's log order is the order
# its apply worker applies the publisher's transactions in, so while 8
# writers append on the publisher:
#   - the subscriber holds the same events, versions, positions and hashes;
#   - a projection on the subscriber applies every event exactly once and in
#     stream order (its handler refuses a gap), and equals a replay;
#   - the hash chain verifies there;
#   - events copied by the initial table sync are in that order too.
# Without it the subscriber's rows keep the publisher's txids, which its
# readers would compare with their own horizon (checked at the end).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('lr_pub');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'");
$pub->start;

my $sub = PostgreSQL::Test::Cluster->new('lr_sub');
$sub->init;
$sub->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
ocx.batch_size = 50
});
$sub->start;

$pub->safe_psql('postgres', q{
CREATE EXTENSION ocx;
-- events before the subscription: the initial table sync copies them
-- (100 transactions of 2 events)
DO $$
BEGIN
    FOR j IN 1..5 LOOP
        FOR i IN 1..20 LOOP
            PERFORM ocx.append('acct-' || i, NULL, jsonb_build_array(
                jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', j)),
                jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('n', -j))));
            COMMIT;
        END LOOP;
    END LOOP;
END $$;
CREATE PUBLICATION ocx_log FOR TABLE ocx.streams, ocx.events;
});

# the projection refuses a gap or a repeat in a stream: either shows up as
# a dead letter, and as a difference from the replay
my $model_sql = q{
CREATE TABLE model (stream_id text, stream_version bigint, n int, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.stream_version <> COALESCE((SELECT max(stream_version) FROM public.model
                                      WHERE stream_id = e.stream_id), 0) + 1 THEN
        RAISE EXCEPTION 'out of stream order: % version %', e.stream_id, e.stream_version;
    END IF;
    INSERT INTO public.model VALUES (e.stream_id, e.stream_version, (e.data->>'n')::int, e.global_position);
END $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
};
$sub->safe_psql('postgres', 'CREATE EXTENSION ocx');
is($sub->safe_psql('postgres', 'SELECT ocx.set_logical_subscriber()'), 'f',
	'set_logical_subscriber(): it was not a subscriber before');
is($sub->safe_psql('postgres', 'SELECT ocx.set_logical_subscriber(true)'), 't',
	'a second call changes nothing and says so');
is($sub->safe_psql('postgres', q{
SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
 WHERE tgname IN ('events_local_order', 'streams_local_order')}),
	'events_local_order:R,streams_local_order:R', 'its triggers fire in replica sessions only');
is($sub->safe_psql('postgres', q{
SELECT has_function_privilege(r, 'ocx.set_logical_subscriber(boolean)', 'EXECUTE')
  FROM unnest(ARRAY['ocx_reader', 'ocx_writer', 'ocx_admin']) r}),
	"f\nf\nf", 'only the owner (and superusers) may make a database a subscriber');
$sub->safe_psql('postgres', $model_sql);

my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION ocx_log CONNECTION '$connstr' PUBLICATION ocx_log");

# 8 writers on the publisher, 10% of their transactions rolled back
my $script = $pub->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 40)
\set r random(1, 10)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', jsonb_build_object('n', :r));
SELECT ocx.append('acct-' || (:s + 1), NULL, jsonb_build_array(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('n', :r)), jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('n', -:r))));
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
});
$pub->command_ok(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', '100', '--max-tries', '100', '-f', $script,
	  '-h', $pub->host, '-p', $pub->port, 'postgres' ],
	'8 concurrent writers on the publisher');
$pub->wait_for_catchup('ocx_log');

# the same log, row for row (everything but the txid, which is local)
my $rows = q{SELECT count(*) || ' ' || md5(string_agg(
    event_id || stream_id || stream_version || global_position || type || data::text || encode(hash, 'hex'),
    ',' ORDER BY global_position)) FROM ocx.events};
my $pub_rows = $pub->safe_psql('postgres', $rows);
is($sub->safe_psql('postgres', $rows), $pub_rows, 'the subscriber holds the publisher\'s events, row for row');
my ($n) = split / /, $pub_rows;
cmp_ok($n, '>', 200 + 1000, "the writers appended ($n events in all)");
is($sub->safe_psql('postgres', q{SELECT string_agg(stream_id || version || encode(head, 'hex'), ',' ORDER BY stream_id) FROM ocx.streams}),
   $pub->safe_psql('postgres', q{SELECT string_agg(stream_id || version || encode(head, 'hex'), ',' ORDER BY stream_id) FROM ocx.streams}),
   'and its streams, with their versions and heads');

# log order on the subscriber: the apply order, in its own xid space
# the events copied by the table sync were written by 100 transactions on
# the publisher, and arrived in one on the subscriber
my $copied = q{SELECT count(*) || ' events, ' || count(DISTINCT txid) || ' txids'
                 FROM ocx.events WHERE global_position <= 200};
is($pub->safe_psql('postgres', $copied), '200 events, 100 txids', 'the publisher wrote the first 200 events in 100 transactions');
is($sub->safe_psql('postgres', $copied), '200 events, 1 txids',
	'the subscriber has them with the txid of the one transaction that copied them');
is($sub->safe_psql('postgres', q{
SELECT count(*) FROM ocx.events e
 WHERE e.txid >= ocx.log_txid()}), '0', 'every applied event has a txid of the subscriber\'s own past');
is($sub->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT stream_id, stream_version,
                             lag(txid) OVER w AS prev_txid, txid,
                             lag(global_position) OVER w AS prev_pos, global_position
                        FROM ocx.events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) x
 WHERE (prev_txid, prev_pos) > (txid, global_position)}), '0',
	'in the subscriber\'s log order each stream\'s versions ascend');

# the projection: every event once, in stream order, equal to a replay
my $diff_sql = q{
SELECT (SELECT count(*) FROM model) || ':' || (SELECT count(*) FROM (
    (SELECT stream_id, stream_version, n, pos FROM model
     EXCEPT ALL
     SELECT stream_id, stream_version, (data->>'n')::int, global_position
       FROM ocx.read_all(NULL, NULL, NULL, '{acct}'))
    UNION ALL
    (SELECT stream_id, stream_version, (data->>'n')::int, global_position
       FROM ocx.read_all(NULL, NULL, NULL, '{acct}')
     EXCEPT ALL
     SELECT stream_id, stream_version, n, pos FROM model)) d)
};
ok($sub->poll_query_until('postgres',
	q{SELECT lag_events = 0 AND events_applied > 0 FROM ocx.projection_status WHERE name = 'model'}),
	'the projection on the subscriber catches up');
is($sub->safe_psql('postgres', $diff_sql), "$n:0", 'its read model equals a replay, every event applied once');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM ocx.dead_letters'), '0', 'and no event came out of stream order');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify() WHERE problem IS NOT NULL}), '0',
	'the hash chain verifies on the subscriber');

# while the projection runs: more appends, applied and projected
$pub->safe_psql('postgres', q{
SELECT ocx.append_event('acct-' || i, NULL, 'Deposited', jsonb_build_object('n', i)) FROM generate_series(1, 50) i});
$pub->wait_for_catchup('ocx_log');
ok($sub->poll_query_until('postgres',
	qq{SELECT (SELECT count(*) FROM model) = $n + 50}),
	'events applied later are projected too');
is($sub->safe_psql('postgres', $diff_sql), ($n + 50) . ':0', 'still equal to a replay');

# turned off: the publisher's txids arrive as they are
is($sub->safe_psql('postgres', 'SELECT ocx.set_logical_subscriber(false)'), 't', 'set_logical_subscriber(false) says it was on');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgname IN ('events_local_order', 'streams_local_order')}),
	'0', 'and removes its triggers');
$pub->safe_psql('postgres', q{SELECT ocx.append_event('acct-1', NULL, 'Deposited', '{"n": 7}')});
$pub->wait_for_catchup('ocx_log');
is($sub->safe_psql('postgres', q{SELECT txid FROM ocx.events WHERE stream_id = 'acct-1' ORDER BY stream_version DESC LIMIT 1}),
   $pub->safe_psql('postgres', q{SELECT txid FROM ocx.events WHERE stream_id = 'acct-1' ORDER BY stream_version DESC LIMIT 1}),
   'without it an applied event keeps the publisher\'s txid');

$sub->stop;
$pub->stop;
done_testing();
