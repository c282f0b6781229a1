-- The one vocabulary (docs/reference.md, "Vocabulary"): the name rule (OX500)
-- for every named object, define_X creates or replaces, drop_X(name,
-- if_exists), the renamed parameters, and the deprecated create_subscription
-- (WARNING OX501).  Run as members of ocx_admin and ocx_writer, the least
-- privileged roles that may call these.
\set SHOW_CONTEXT never
CREATE ROLE vocab_r_admin;
CREATE ROLE vocab_r_writer;
GRANT ocx_admin TO vocab_r_admin;
GRANT ocx_writer TO vocab_r_writer;
CREATE FUNCTION vocab_handler(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION vocab_cmd(c ocx.command) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
SET ROLE vocab_r_admin;

-- the one name rule: 1 to 63 bytes of letters, digits, "_", ".", ":", "-",
-- starting with a letter or "_"; the same SQLSTATE for every kind of object
SELECT ocx.define_projection('1bad', 'vocab_handler(ocx.event)');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_subscription('has space');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('vocab/saga', '{"steps": [{"name": "a", "command": "vocab.Cmd", "success": "VocabDone"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_module('vocab module', '{"description": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type('vocab.Évent', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_aggregate('vocab;agg', reducer => '{"T": [{"add": "n", "value": 1}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler('vocab.Cmd''', NULL);
\echo :LAST_ERROR_SQLSTATE
-- 64 bytes is one too many, for every kind (0.2.0 allowed up to 200 or 256)
SELECT ocx.define_subscription(repeat('s', 64));
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga(repeat('s', 64), '{"steps": [{"name": "a", "command": "vocab.Cmd", "success": "VocabDone"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_event_type(repeat('t', 64), 1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_command_handler(repeat('c', 64), NULL);
\echo :LAST_ERROR_SQLSTATE
-- NULL and empty names keep their 0.2.0 SQLSTATEs for one release
SELECT ocx.define_saga('', '{"steps": [{"name": "a", "command": "vocab.Cmd", "success": "VocabDone"}]}');
\echo :LAST_ERROR_SQLSTATE
-- nothing was written
SELECT (SELECT count(*) FROM ocx.projections WHERE name = '1bad')
     + (SELECT count(*) FROM ocx.subscriptions WHERE name IN ('has space', repeat('s', 64)))
     + (SELECT count(*) FROM ocx.saga_definitions WHERE name IN ('vocab/saga', repeat('s', 64)))
     + (SELECT count(*) FROM ocx.modules WHERE name = 'vocab module')
     + (SELECT count(*) FROM ocx.event_types WHERE type IN ('vocab.Évent', repeat('t', 64)))
     + (SELECT count(*) FROM ocx.aggregates WHERE aggregate_type = 'vocab;agg')
     + (SELECT count(*) FROM ocx.command_handlers WHERE command_type IN ('vocab.Cmd''', repeat('c', 64)))
       AS nothing_written;
-- 63 bytes and every allowed character
SELECT ocx.define_subscription(repeat('s', 63));
SELECT ocx.define_event_type('_vocab:Ev-1.a', 1);
SELECT octet_length(name) FROM ocx.subscriptions WHERE name = repeat('s', 63);

-- define_command_handler creates or replaces (0.2.0: OX321 the second time);
-- its first parameter is type, as in send_command
SELECT ocx.define_command_handler(type => 'vocab.Cmd', handler => NULL);
SELECT ocx.define_command_handler(type => 'vocab.Cmd', handler => 'vocab_cmd(ocx.command)',
                                  retry => '{"max_attempts": 2}');
SELECT command_type, handler, max_attempts, handler_role
  FROM ocx.command_handlers WHERE command_type = 'vocab.Cmd';
-- the 0.2.0 parameter name is gone (named notation only; positional calls are unchanged)
SELECT ocx.define_command_handler(command_type => 'vocab.Cmd', handler => NULL);
\echo :LAST_ERROR_SQLSTATE

-- define_subscription creates or replaces: filters and lease change, the
-- cursors stay
SELECT ocx.define_subscription('vocab_sub', categories => ARRAY['vocabs']);
SELECT ocx.append('vocabs-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT ocx.ack('vocab_sub', (SELECT cursor FROM ocx.poll('vocab_sub', 1)));
SELECT ocx.define_subscription('vocab_sub', types => ARRAY['B', 'C'], categories => ARRAY['vocabs'],
                               lease => '1 minute');
SELECT types, categories, partitions, lease FROM ocx.subscriptions WHERE name = 'vocab_sub';
SELECT ocx.append('vocabs-1', 2, '[{"type": "C", "data": {}}, {"type": "D", "data": {}}]');
SELECT stream_version, type FROM ocx.poll('vocab_sub');
-- the same definition again changes nothing
SELECT ocx.define_subscription('vocab_sub', types => ARRAY['B', 'C'], categories => ARRAY['vocabs'],
                               lease => '1 minute');
-- the partitions cannot change: its cursors are per partition
SELECT ocx.define_subscription('vocab_sub', categories => ARRAY['vocabs'], partitions => 4);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS partitions FROM ocx.subscription_partitions WHERE subscription = 'vocab_sub';

-- the deprecated create_subscription: a WARNING with its SQLSTATE, then
-- what 0.2.0 did (creates; OX302 when it exists)
\set VERBOSITY sqlstate
SELECT ocx.create_subscription('vocab_old');
\set VERBOSITY default
SELECT ocx.create_subscription('vocab_old');
\echo :LAST_ERROR_SQLSTATE
SELECT name, partitions FROM ocx.subscriptions WHERE name = 'vocab_old';

-- every drop_X(name, if_exists boolean DEFAULT false)
SELECT ocx.define_projection('vocab_proj', 'vocab_handler(ocx.event)', categories => ARRAY['vocabs']);
SELECT ocx.define_projection('vocab_proj', 'vocab_handler(ocx.event)', categories => ARRAY['vocabx']);
SELECT categories FROM ocx.projections WHERE name = 'vocab_proj';
SELECT ocx.define_saga('vocab_saga', '{"steps": [{"name": "a", "command": "vocab.Cmd", "success": "VocabDone"}]}');
SELECT ocx.define_saga('vocab_saga', '{"steps": [{"name": "b", "command": "vocab.Cmd", "success": "VocabDone"}]}');
SELECT steps->0->>'name' AS step FROM ocx.saga_definitions WHERE name = 'vocab_saga';
SELECT ocx.drop_projection('vocab_proj');
SELECT ocx.drop_projection('vocab_proj');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_projection('vocab_proj', if_exists => true);
SELECT ocx.drop_saga('vocab_saga');
SELECT ocx.drop_saga('vocab_saga');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_saga('vocab_saga', if_exists => true);
SELECT ocx.drop_command_handler('vocab.Cmd');
SELECT ocx.drop_command_handler('vocab.Cmd');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_command_handler('vocab.Cmd', if_exists => true);
SELECT ocx.drop_subscription('vocab_sub');
SELECT ocx.drop_subscription('vocab_sub');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_subscription('vocab_sub', if_exists => true);
-- NULL if_exists is false
SELECT ocx.drop_saga('vocab_saga', NULL);
\echo :LAST_ERROR_SQLSTATE

-- the renamed parameters: type (aggregates), dead_letter_id
SELECT ocx.define_aggregate(type => 'vocab_agg', reducer => '{"A": [{"add": "n", "value": 1}]}');
SELECT state, version FROM ocx.load(type => 'vocab_agg', stream_id => 'vocabs-1');
SELECT ocx.snapshot(type => 'vocab_agg', stream_id => 'vocabs-1');
SELECT ocx.retry_dead_letter(dead_letter_id => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.skip_dead_letter(dead_letter_id => -1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a writer may not define or drop
SET ROLE vocab_r_writer;
SELECT ocx.define_subscription('vocab_w');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_subscription('vocab_w', if_exists => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT ocx.drop_subscription(repeat('s', 63));
SELECT ocx.drop_subscription('vocab_old');
DROP FUNCTION vocab_handler(ocx.event);
DROP FUNCTION vocab_cmd(ocx.command);
DROP ROLE vocab_r_admin;
DROP ROLE vocab_r_writer;
