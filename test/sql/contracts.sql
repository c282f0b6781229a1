-- Event contracts: define_event_type and validation of appends in C.
\set SHOW_CONTEXT never

SELECT ocx.define_event_type('ct.Opened', 1, '{
  "type": "object",
  "required": ["owner", "limit"],
  "properties": {
    "owner":  {"type": "string", "minLength": 2, "maxLength": 10},
    "limit":  {"type": "integer", "minimum": 0, "maximum": 1000},
    "rate":   {"type": "number", "minimum": 0.5},
    "kind":   {"enum": ["personal", "business", null]},
    "tags":   {"type": "array", "items": {"type": "string"}},
    "owner2": {"type": ["string", "null"]},
    "address": {"type": "object", "required": ["city"],
                "properties": {"city": {"type": "string"}},
                "additionalProperties": false}
  },
  "additionalProperties": false,
  "title": "an account was opened"
}');
SELECT type, schema_version, schema IS NOT NULL AS has_schema FROM ocx.event_types WHERE type = 'ct.Opened';

-- valid events are stored at the current schema version
SELECT ocx.append('ctacct-1', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 10,
  "rate": 1.5, "kind": "personal", "tags": ["a", "b"], "owner2": null, "address": {"city": "Oslo"}}}');
SELECT ocx.append_event('ctacct-2', 0, 'ct.Opened', '{"owner": "bo", "limit": 0, "kind": null}');
SELECT stream_id, schema_version FROM ocx.events WHERE stream_id LIKE 'ctacct-%' ORDER BY stream_id;

-- each rule, named with its path
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"limit": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": 7, "limit": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "a", "limit": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "abcdefghijk", "limit": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1.5}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": -1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1001}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "rate": 0.1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "kind": "other"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "tags": ["a", 2]}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "extra": true}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "address": {}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1, "address": {"city": "X", "zip": 1}}}');
\echo :LAST_ERROR_SQLSTATE
-- a batch is all or nothing: the second event is bad, nothing is written
SELECT ocx.append('ctacct-9', 0, '[{"type": "ct.Opened", "data": {"owner": "ann", "limit": 1}},
                                   {"type": "ct.Opened", "data": {"owner": "ann"}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.stream_version('ctacct-9');
-- a schema version newer than the contract
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "schema_version": 2, "data": {}}');
\echo :LAST_ERROR_SQLSTATE
-- an older version is stored as written (upcast on read) without validation
SELECT ocx.define_event_type('ct.Opened', 2, '{"type": "object", "required": ["holder"]}');
SELECT ocx.append('ctacct-9', 0, '{"type": "ct.Opened", "schema_version": 1, "data": {"owner": "x"}}');
SELECT ocx.append('ctacct-10', 0, '{"type": "ct.Opened", "data": {"owner": "x"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-10', 0, '{"type": "ct.Opened", "data": {"holder": "x"}}');
-- CloudEvents appends are validated the same way
SELECT ocx.append_cloudevents('ctacct-12', 0, '{"specversion": "1.0", "id": "c2c6b7de-5d53-4d1e-9b7e-1d5c9f0f6a11",
  "source": "test", "type": "ct.Opened", "data": {"owner": "x"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append_cloudevents('ctacct-12', 0, '{"specversion": "1.0", "id": "c2c6b7de-5d53-4d1e-9b7e-1d5c9f0f6a11",
  "source": "test", "type": "ct.Opened", "data": {"holder": "x"}}');
-- unregistered types are accepted as they are
SELECT ocx.append('ctacct-11', 0, '{"type": "ct.Unknown", "data": {"anything": [1, 2]}}');

-- definition errors
SELECT ocx.define_event_type('ct.Opened', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"type": "object", "pattern": "^a"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"type": "thing"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"properties": {"a": {"minimum": "1"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"required": "a"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"enum": [{"a": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '{"maxLength": -1}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Bad', 1, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.event_types WHERE type = 'ct.Bad';

-- the definition is cached per backend and invalidated on change: a
-- redefinition in this session applies to the very next append
SELECT ocx.define_event_type('ct.Flag', 1, '{"type": "object", "required": ["on"]}');
SELECT ocx.append('ctflag-1', NULL, '{"type": "ct.Flag", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('ct.Flag', 1, '{"type": "object"}');
SELECT ocx.append('ctflag-1', NULL, '{"type": "ct.Flag", "data": {}}');
-- and a rolled-back redefinition leaves no trace in the cache
BEGIN;
SELECT ocx.define_event_type('ct.Flag', 1, '{"type": "object", "required": ["on"]}');
SELECT ocx.append('ctflag-2', NULL, '{"type": "ct.Flag", "data": {"on": true}}');
ROLLBACK;
SELECT ocx.append('ctflag-1', NULL, '{"type": "ct.Flag", "data": {}}');
-- direct DML on the definition table invalidates too
UPDATE ocx.event_types SET schema = '{"type": "object", "required": ["x"]}' WHERE type = 'ct.Flag';
SELECT ocx.append('ctflag-1', NULL, '{"type": "ct.Flag", "data": {}}');
\echo :LAST_ERROR_SQLSTATE

-- a schema broken by hand fails only its own type's appends
UPDATE ocx.event_types SET schema = '{"type": "object", "pattern": "^x"}' WHERE type = 'ct.Flag';
SELECT ocx.append('ctflag-1', NULL, '{"type": "ct.Flag", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.append('ctacct-13', 0, '{"type": "ct.Opened", "data": {"holder": "x"}}');
SELECT ocx.append('ctacct-14', 0, '{"type": "ct.Other", "data": {}}');
