-- Modules: a domain's event types, upcasters and aggregates in one call.
\set SHOW_CONTEXT never

CREATE FUNCTION public.mod_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql
    RETURN state || pg_catalog.jsonb_build_object('events', COALESCE((state->>'events')::int, 0) + 1);

SELECT ocx.define_module('mod_bank', '{
  "description": "accounts",
  "event_types": [
    {"type": "mod.Deposited", "schema_version": 2,
     "schema": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}}},
    {"type": "mod.Closed", "schema_version": 1}
  ],
  "upcasters": [
    {"type": "mod.Deposited", "from_schema_version": 1, "spec": [{"op": "rename", "from": "amt", "to": "amount"}]}
  ],
  "aggregates": [
    {"aggregate_type": "mod_account", "reducer": {"mod.Deposited": [{"add": "balance", "from": "amount"}],
                                                   "mod.Closed": [{"set": "closed", "value": true}]},
     "initial_state": {"balance": 0}, "snapshot_every": 100},
    {"aggregate_type": "mod_counter", "apply": "public.mod_apply(jsonb, ocx.event)"}
  ]
}');
SELECT type, schema_version FROM ocx.event_types WHERE type LIKE 'mod.%' ORDER BY 1;
SELECT type, from_schema_version FROM ocx.upcasters WHERE type LIKE 'mod.%';
SELECT aggregate_type, apply, snapshot_every, definition_version FROM ocx.aggregates
 WHERE aggregate_type LIKE 'mod_%' ORDER BY 1;
SELECT name, definition->>'description' AS description FROM ocx.modules;

SELECT ocx.append('modacct-1', 0, '[
  {"type": "mod.Deposited", "schema_version": 1, "data": {"amt": 5}},
  {"type": "mod.Deposited", "data": {"amount": 7}},
  {"type": "mod.Closed", "data": {}}
]');
SELECT ocx.append('modacct-1', NULL, '{"type": "mod.Deposited", "data": {"amount": -1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT state, version FROM ocx.load('mod_account', 'modacct-1');
SELECT state, version FROM ocx.load('mod_counter', 'modacct-1');
SELECT ocx.snapshot('mod_account', 'modacct-1');

-- installing the same module again changes nothing (snapshots survive)
SELECT installed_at AS first_install FROM ocx.modules WHERE name = 'mod_bank' \gset
SELECT ocx.define_module('mod_bank', definition) FROM ocx.modules WHERE name = 'mod_bank';
SELECT installed_at = :'first_install' AS unchanged FROM ocx.modules WHERE name = 'mod_bank';
SELECT definition_version FROM ocx.aggregates WHERE aggregate_type = 'mod_account';
SELECT count(*) AS snapshots FROM ocx.snapshots WHERE aggregate_type = 'mod_account';

-- invalid modules: nothing of them is installed
SELECT ocx.define_module('mod_bad', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"projections": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"event_types": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"event_types": [{"type": "mod.X"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"event_types": [{"type": "mod.X", "schema_version": "two"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"upcasters": [{"type": "mod.X", "from_schema_version": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"aggregates": [{"apply": "public.mod_apply(jsonb, ocx.event)"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('mod_bad', '{"aggregates": [{"aggregate_type": "mod_y", "apply": "public.nope(jsonb, ocx.event)"}]}');
\echo :LAST_ERROR_SQLSTATE
-- an error inside a part keeps its own code, and the whole module is rolled back
SELECT ocx.define_module('mod_bad', '{"event_types": [{"type": "mod.Y", "schema_version": 1}],
                                      "aggregates": [{"aggregate_type": "mod_y", "reducer": {"mod.Y": [{"frob": 1}]}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.event_types WHERE type IN ('mod.X', 'mod.Y');
SELECT count(*) FROM ocx.modules WHERE name = 'mod_bad';
