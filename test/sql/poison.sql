-- Issue 11, items 3, 5, 6: a poison event (its upcaster fails) stops only the
-- readers that need it; poll upcasts; a subscription filtered to a type that
-- never occurs moves past the history it filters out.
\set SHOW_CONTEXT never

-- item 3: an upcaster that cannot cast "NaN" to an integer
SELECT ocx.define_event_type('U', 2);
SELECT ocx.define_upcaster('U', 1, spec => '{"op":"cast","path":"n","to":"integer"}');
CREATE TEMP TABLE poison_start AS
    SELECT ocx.cursor(pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()), 0) AS c;
SELECT ocx.append('poison-1', NULL, '[{"type":"U","schema_version":1,"data":{"n":"NaN"}}]');
SELECT ocx.append('poison-2', NULL, '[{"type":"poison.Ok","data":{"k":1}},
                                      {"type":"U","schema_version":1,"data":{"n":"7"}}]');

-- a reader that needs the type fails on it...
SELECT count(*) FROM ocx.read_all((SELECT c FROM poison_start), NULL);
\echo :LAST_ERROR_SQLSTATE
-- ...readers filtered to other types never upcast it
SELECT stream_id, type, data FROM ocx.read_all((SELECT c FROM poison_start), NULL, ARRAY['poison.Ok']);
-- ...and every reader can read the stored form
SELECT stream_id, type, schema_version, data
  FROM ocx.read_all((SELECT c FROM poison_start), NULL, upcast => false);
SELECT stream_id, type, schema_version, data
  FROM ocx.read_category('poison', (SELECT c FROM poison_start), NULL, upcast => false);
-- upcast => true (or NULL) is the default: every existing call still upcasts
SELECT ocx.define_upcaster('U', 1, spec => '{"op":"cast","path":"n","to":"string"}');
SELECT stream_id, type, schema_version, data
  FROM ocx.read_all((SELECT c FROM poison_start), NULL, NULL, NULL, NULL);
SELECT stream_id, type, schema_version, data FROM ocx.read_category('poison', (SELECT c FROM poison_start));

-- item 5: poll returns events upcast, like read_all
SELECT ocx.define_event_type('poison.V', 3);
SELECT ocx.define_upcaster('poison.V', 1, spec => '{"op":"rename","from":"a","to":"b"}');
SELECT ocx.define_upcaster('poison.V', 2, spec => '{"op":"cast","path":"b","to":"integer"}');
SELECT ocx.define_subscription('poison_v', types => ARRAY['poison.V'],
                               "after" => (SELECT c FROM poison_start));
SELECT ocx.append('poisonv-1', NULL, '[{"type":"poison.V","schema_version":1,"data":{"a":"3"}}]');
SELECT schema_version, data FROM ocx.read_all((SELECT c FROM poison_start), NULL, ARRAY['poison.V']);
SELECT schema_version, data FROM ocx.poll('poison_v');

-- item 6: a subscription to a type that never occurs
SELECT ocx.define_subscription('poison_never', types => ARRAY['poison.Never']);
SELECT ocx.append('poisonn-1', NULL, '[{"type":"poison.Noise","data":{}},{"type":"poison.Noise","data":{}}]');
SELECT count(*) AS polled FROM ocx.poll('poison_never');
-- the empty poll moved the stored position past the events it filtered out
SELECT (p.acked_txid, p.acked_position) >= (e.txid, e.global_position) AS moved_past
  FROM ocx.subscription_partitions p, ocx.events e
 WHERE p.subscription = 'poison_never'
   AND e.global_position = (SELECT max(global_position) FROM ocx.events WHERE stream_id = 'poisonn-1');
-- ack after an empty poll acknowledges nothing and is no error
SELECT ocx.ack('poison_never', '0/0'::ocx.cursor);
-- a consumer that holds no partition still gets OX303
SELECT ocx.ack('poison_never', '0/0'::ocx.cursor, 'nobody');
\echo :LAST_ERROR_SQLSTATE
-- the next poll does not rescan: events after the moved position only
SELECT ocx.append('poisonn-2', NULL, '[{"type":"poison.Never","data":{"x":1}}]');
SELECT stream_id, type, data FROM ocx.poll('poison_never');

-- item 3 for subscriptions: a poison event is the dead letter of the
-- subscription that cannot read it, per its on_poison
SELECT ocx.define_upcaster('U', 1, spec => '{"op":"cast","path":"n","to":"integer"}');
SELECT ocx.define_subscription('poison_sub', categories => ARRAY['poison'],
                               "after" => (SELECT c FROM poison_start));
SELECT ocx.define_subscription('poison_stop', categories => ARRAY['poison'],
                               "after" => (SELECT c FROM poison_start), on_poison => 'stop');
SELECT ocx.define_subscription('poison_other', types => ARRAY['poison.Ok'],
                               "after" => (SELECT c FROM poison_start));
-- as_stored (the default): every event in order, the poison one as stored and marked
SELECT stream_id, type, schema_version, data, metadata->'ocx_poison' AS poison
  FROM ocx.poll('poison_sub', 100);
-- polled again before an ack: delivered again, recorded once
SELECT stream_id, schema_version, metadata ? 'ocx_poison' AS marked FROM ocx.poll('poison_sub', 100);
SELECT subscription, stream_id, stream_version, type, schema_version, sqlstate, error
  FROM ocx.subscription_dead_letters;
-- acknowledged like any event: the subscription goes on
SELECT ocx.ack('poison_sub', (SELECT max("cursor"::text) FROM ocx.poll('poison_sub', 100))::ocx.cursor);
SELECT count(*) AS after_ack FROM ocx.poll('poison_sub', 100);
-- stop: the poll fails with OX121 and hands out nothing
SELECT count(*) FROM ocx.poll('poison_stop', 100);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stop_recorded FROM ocx.subscription_dead_letters WHERE subscription = 'poison_stop';
-- a subscription to other types never upcasts it
SELECT stream_id, type FROM ocx.poll('poison_other', 100);
-- an unknown policy: OX301
SELECT ocx.define_subscription('poison_bad', on_poison => 'skip');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_subscription('poison_sub');
SELECT ocx.drop_subscription('poison_stop');
SELECT ocx.drop_subscription('poison_other');
SELECT count(*) AS dead_letters_dropped FROM ocx.subscription_dead_letters;
-- the upcaster fixed again for the tests that read the whole log after this one
SELECT ocx.define_upcaster('U', 1, spec => '{"op":"cast","path":"n","to":"string"}');

SELECT ocx.drop_subscription('poison_v');
SELECT ocx.drop_subscription('poison_never');
