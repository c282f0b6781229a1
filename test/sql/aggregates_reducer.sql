-- Declarative reducers: the rule language, folded in C.
\set SHOW_CONTEXT never

SELECT ocx.define_aggregate('agg_cart', reducer => '{
  "red.ItemAdded":   [{"append": "items", "from": "sku"},
                      {"add": "total", "from": "price"},
                      {"add": "count", "value": 1}],
  "red.ItemRemoved": [{"subtract": "total", "from": "price"},
                      {"add": "count", "value": -1}],
  "red.Tagged":      [{"set": "meta.tag", "from": "tag"}],
  "red.Untagged":    [{"remove": "meta.tag"}],
  "red.CheckedOut":  [{"set": "status", "value": "checked_out"},
                      {"set": "checked_out_at", "from": "$time"},
                      {"set": "payment", "from": "$data"}],
  "*":               [{"set": "version", "from": "$version"},
                      {"set": "last_type", "from": "$type"}]
}', initial_state => '{"status": "open", "total": 0}');

SELECT ocx.append('redcart-1', 0, '[
  {"type": "red.ItemAdded", "data": {"sku": "A", "price": 10.5}},
  {"type": "red.ItemAdded", "data": {"sku": "B", "price": 2}},
  {"type": "red.Tagged", "data": {"tag": "gift"}},
  {"type": "red.ItemRemoved", "data": {"sku": "B", "price": 2}},
  {"type": "red.Other", "data": {}},
  {"type": "red.CheckedOut", "data": {"method": "card"}, "time": "2024-05-01T12:00:00Z"}
]');
SELECT jsonb_pretty(state), version FROM ocx.load('agg_cart', 'redcart-1');
SELECT state FROM ocx.load('agg_cart', 'redcart-1', 3);
SELECT ocx.append('redcart-1', 6, '{"type": "red.Untagged", "data": {}}');
SELECT state->'meta' AS meta FROM ocx.load('agg_cart', 'redcart-1');

-- a rule whose source is missing from the event does nothing
SELECT ocx.append('redcart-2', 0, '{"type": "red.ItemAdded", "data": {"sku": "C"}}');
SELECT state FROM ocx.load('agg_cart', 'redcart-2');

-- fold errors: adding a non-number
SELECT ocx.append('redcart-3', 0, '{"type": "red.ItemAdded", "data": {"sku": "D", "price": "cheap"}}');
SELECT * FROM ocx.load('agg_cart', 'redcart-3');
\echo :LAST_ERROR_SQLSTATE

-- rule language errors, each at definition time
SELECT ocx.define_aggregate('agg_bad', reducer => '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"frob": "x"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "x", "add": "y", "value": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "x"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "x", "from": "a", "value": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"add": "x", "value": "one"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "x", "from": "$nope"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "a..b", "value": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"remove": "x", "from": "y"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": [{"set": "x", "value": 1, "extra": 2}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('agg_bad', reducer => '{"T": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.aggregates WHERE aggregate_type = 'agg_bad';

-- a state path through a non-object
SELECT ocx.define_aggregate('agg_path', reducer => '{"red.P": [{"set": "a.b", "value": 1}]}',
                            initial_state => '{"a": 5}');
SELECT ocx.append('redpath-1', 0, '{"type": "red.P", "data": {}}');
SELECT * FROM ocx.load('agg_path', 'redpath-1');
\echo :LAST_ERROR_SQLSTATE
