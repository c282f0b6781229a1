# The saga task reads the log through the one reader (issue 12, "One
# reader"): a saga's success event reaches it revealed (a personal field
# in clear, not the stored ocx:pd1: marker) and upcast (an event of an old
# schema_version whose type has an upcaster).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxPrivacy;

my $node = privacy_node('saga_reader');

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
SELECT ocx.define_personal_data('sr.ADone', 'customer_id', '{email}');
SELECT ocx.define_saga('sr', '{"steps": [
    {"name": "a", "command": "sr.A", "success": "sr.ADone"},
    {"name": "b", "command": "sr.B", "data": {"email": "$.steps.a.email"}, "success": "sr.BDone"}]}');
SELECT ocx.start_saga('sr', '{}', '00000000-0000-0000-0000-0000000000c1');
});

# step a's success event: its email is stored encrypted
$node->safe_psql('postgres', q{
SELECT ocx.append('srs-1', NULL, '{"type": "sr.ADone", "data": {"customer_id": "c1", "email": "ann@example.com"},
                  "correlation_id": "00000000-0000-0000-0000-0000000000c1"}');
});
is($node->safe_psql('postgres', q{SELECT data->>'email' LIKE 'ocx:pd1:%' FROM ocx.events WHERE stream_id = 'srs-1'}),
   't', 'the personal field is stored encrypted');
ok($node->poll_query_until('postgres', q{
SELECT current_step = 2 FROM ocx.saga_instances WHERE saga_id = '00000000-0000-0000-0000-0000000000c1'}),
   'the saga moved to step b');
is($node->safe_psql('postgres', q{SELECT results->'a'->>'email' FROM ocx.saga_instances
                                   WHERE saga_id = '00000000-0000-0000-0000-0000000000c1'}),
   'ann@example.com', 'the saga got the success event revealed');
is($node->safe_psql('postgres', q{SELECT data->>'email' FROM ocx.commands
                                   WHERE correlation_id = '00000000-0000-0000-0000-0000000000c1' AND type = 'sr.B'}),
   'ann@example.com', "step b's command data is filled from the revealed event");

# step b's success event, written at schema_version 1; then the type moves
# to version 2 with an upcaster, in the same transaction
$node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.append('srs-1', NULL, '{"type": "sr.BDone", "data": {"ok": true, "legacy": 1},
                  "correlation_id": "00000000-0000-0000-0000-0000000000c1"}');
SELECT ocx.define_event_type('sr.BDone', 2);
SELECT ocx.define_upcaster('sr.BDone', 1, spec => '{"op": "remove", "path": "legacy"}');
COMMIT;
});
ok($node->poll_query_until('postgres', q{
SELECT state = 'completed' FROM ocx.saga_instances WHERE saga_id = '00000000-0000-0000-0000-0000000000c1'}),
   'the saga completed');
is($node->safe_psql('postgres', q{SELECT results->'b' FROM ocx.saga_instances
                                   WHERE saga_id = '00000000-0000-0000-0000-0000000000c1'}),
   '{"ok": true}', 'the saga got the old event upcast');

$node->stop;
done_testing();
