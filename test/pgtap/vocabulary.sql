-- pgTAP: the one vocabulary of the API (docs/reference.md, "Vocabulary"),
-- checked over pg_proc for schema ocx, so that a function added later that
-- breaks a rule fails here.  The rules read from the tables below: a new
-- function whose parameters are new concepts, or a new define_X, adds rows
-- to them (and nothing else).  Each rule is one test that lists what breaks
-- it, so a failure names the functions.
BEGIN;
SELECT plan(34);

-- The concept map: one parameter name per concept, and its type.  Every
-- input parameter of a public function that is named here has this type;
-- every input parameter that looks like a type, an id or a duration (rules
-- below) must be named here.
CREATE TEMP TABLE vocab_concepts (param text PRIMARY KEY, type regtype NOT NULL, concept text NOT NULL);
INSERT INTO vocab_concepts VALUES
    ('stream_id',          'text',        'a stream'),
    ('type',               'text',        'the type of what the function is about: event type, command type, aggregate type'),
    ('types',              'text[]',      'a list of types'),
    ('name',               'text',        'the name of what the function is about (projection, subscription, saga, module)'),
    ('projection',         'text',        'a projection''s name where the function is not about projections'),
    ('category',           'text',        'a stream category'),
    ('categories',         'text[]',      'a list of categories'),
    ('event_id',           'uuid',        'an event''s id'),
    ('command_id',         'uuid',        'a command''s id'),
    ('saga_id',            'uuid',        'a saga instance''s id'),
    ('dead_letter_id',     'bigint',      'a dead letter''s id'),
    ('correlation_id',     'uuid',        'a correlation id'),
    ('causation_id',       'uuid',        'a causation id'),
    ('claim_token',        'uuid',        'a command claim''s fencing token'),
    ('if_exists',          'boolean',     'drop_X: no error when the object does not exist'),
    ('expected_version',   'bigint',      'optimistic concurrency: the stream''s expected version'),
    ('schema_version',     'integer',     'an event type''s schema version'),
    ('from_schema_version','integer',     'the schema version an upcaster reads'),
    ('from_version',       'bigint',      'the first stream version a read returns'),
    ('as_of_version',      'bigint',      'time travel: a stream version'),
    ('as_of_time',         'timestamptz', 'time travel: a point in time'),
    ('max_count',          'integer',     'the most rows a read returns'),
    ('after',              'ocx.cursor',  'a read starts after this cursor'),
    ('cursor',             'ocx.cursor',  'a place in log order'),
    ('partitions',         'integer',     'the number of partitions'),
    ('timeout',            'interval',    'a duration: how long to wait'),
    ('lease',              'interval',    'a duration: how long a consumer holds a partition'),
    ('visibility_timeout', 'interval',    'a duration: how long a claim holds a command'),
    ('older_than',         'interval',    'a duration: an age'),
    ('max_age',            'interval',    'a duration: how old an event may get before retention removes it'),
    ('run_at',             'timestamptz', 'when a command runs'),
    ('seal_id',            'bigint',      'a seal''s id (ocx.seals, docs/integrity.md)');

-- Spellings that name a concept above by another name (0.2.0 had them).
CREATE TEMP TABLE vocab_aliases (alias text PRIMARY KEY, canonical text NOT NULL);
INSERT INTO vocab_aliases VALUES
    ('aggregate_type', 'type'), ('command_type', 'type'), ('event_type', 'type'),
    ('aggregate_types', 'types'), ('command_types', 'types'), ('event_types', 'types'),
    ('id', 'dead_letter_id (or another <kind>_id)'), ('stream', 'stream_id'),
    ('projection_name', 'name'), ('subscription_name', 'name'), ('saga_name', 'name'),
    ('subscription', 'name'), ('limit', 'max_count'), ('count', 'max_count'),
    ('expected', 'expected_version'), ('version', 'expected_version or from_version');

-- Parameter names that mean two things, kept for compatibility (a renamed
-- parameter breaks calls in named notation, and no wrapper can keep both).
CREATE TEMP TABLE vocab_homonyms (param text PRIMARY KEY, why text NOT NULL);
INSERT INTO vocab_homonyms VALUES
    ('retry', 'a retry policy (jsonb) in define_projection and define_command_handler; whether to retry (boolean) in fail_command, since 0.1.0');

-- Every define_X: a call that defines an object named %1$L (valid when %1$L
-- is), run twice to prove it creates or replaces and once with bad names to
-- prove the one name rule.  Keyed by signature: overloads each have a row.
CREATE TEMP TABLE vocab_defines (fn regprocedure PRIMARY KEY, call text NOT NULL);

CREATE FUNCTION public.vocab_handler(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION public.vocab_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
CREATE FUNCTION public.vocab_cmd(c ocx.command) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
INSERT INTO vocab_defines VALUES
    ('ocx.define_event_type(text, integer, jsonb)', $$SELECT ocx.define_event_type(%1$L, 1, '{"type": "object"}')$$),
    ('ocx.define_upcaster(text, integer, jsonb)',
     $$SELECT ocx.define_event_type(%1$L, 2); SELECT ocx.define_upcaster(%1$L, 1, '{"op": "remove", "path": "x"}'::jsonb)$$),
    ('ocx.define_upcaster(text, integer, regprocedure)',
     $$SELECT ocx.define_event_type(%1$L, 2); SELECT ocx.define_upcaster(%1$L, 1, 'public.vocab_up(jsonb)'::regprocedure)$$),
    ('ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb)',
     $$SELECT ocx.define_aggregate(%1$L, reducer => '{"T": [{"add": "n", "value": 1}]}')$$),
    ('ocx.define_module(text, jsonb)', $$SELECT ocx.define_module(%1$L, '{"description": "vocabulary"}')$$),
    ('ocx.define_projection(text, regprocedure, text[], text[], text, jsonb, regprocedure, integer, regclass[])',
     $$SELECT ocx.define_projection(%1$L, 'public.vocab_handler(ocx.event)')$$),
    ('ocx.define_command_handler(text, regprocedure, jsonb)',
     $$SELECT ocx.define_command_handler(%1$L, 'public.vocab_cmd(ocx.command)')$$),
    ('ocx.define_saga(text, jsonb)',
     $$SELECT ocx.define_saga(%1$L, '{"steps": [{"name": "a", "command": "vocab.Cmd", "success": "VocabDone"}]}')$$),
    ('ocx.define_subscription(text, text[], text[], integer, ocx.cursor, interval, text)',
     $$SELECT ocx.define_subscription(%1$L, types => '{VocabDone}')$$),
    ('ocx.define_retention(text, interval, integer)', $$SELECT ocx.define_retention(%1$L, max_count => 10)$$),
    ('ocx.define_personal_data(text, text, text[])',
     $$SELECT ocx.define_personal_data(%1$L, 'customer_id', '{email}')$$);

-- The deprecated spellings kept for one release, and what replaces them.
CREATE TEMP TABLE vocab_deprecated (fn regprocedure PRIMARY KEY, replacement text NOT NULL);
INSERT INTO vocab_deprecated VALUES
    ('ocx.create_subscription(text, text[], text[], integer, ocx.cursor, interval, text)', 'define_subscription');

-- The public functions: schema ocx, not internal (_*), not the cursor type's
-- I/O and operator support functions.
CREATE TEMP VIEW vocab_public AS
SELECT p.oid, p.oid::regprocedure AS fn, p.proname, p.pronargs, p.pronargdefaults,
       p.proargtypes, p.proargnames, p.proargmodes, p.proallargtypes
  FROM pg_proc p
 WHERE p.pronamespace = 'ocx'::regnamespace AND p.prokind = 'f' AND p.proname !~ '^_'
   AND NOT EXISTS (SELECT FROM pg_type t WHERE p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend))
   AND NOT EXISTS (SELECT FROM pg_operator o WHERE o.oprcode = p.oid)
   AND NOT EXISTS (SELECT FROM pg_amproc a WHERE a.amproc = p.oid);

-- Their input parameters (IN, INOUT, VARIADIC), by name and type.
CREATE TEMP VIEW vocab_params AS
SELECT v.fn, v.proname, a.name, a.type, a.ord
  FROM vocab_public v,
       LATERAL (SELECT n.name, t.type::regtype AS type, n.ord
                  FROM unnest(v.proargnames) WITH ORDINALITY n(name, ord)
                  JOIN unnest(coalesce(v.proallargtypes, v.proargtypes::oid[])) WITH ORDINALITY t(type, ord)
                    USING (ord)
                  LEFT JOIN unnest(v.proargmodes) WITH ORDINALITY m(mode, ord) USING (ord)
                 WHERE coalesce(m.mode, 'i') IN ('i', 'b', 'v')) a;

-- the tables are sound
SELECT is((SELECT array_agg(c.param) FROM vocab_concepts c JOIN vocab_aliases a ON a.alias = c.param),
          NULL, 'no concept name is also an alias');
SELECT cmp_ok((SELECT count(*) FROM vocab_public), '>', 40::bigint, 'the walk finds the public functions');
SELECT cmp_ok((SELECT count(*) FROM vocab_params), '>', 100::bigint, 'the walk finds their parameters');

-- 1. one parameter name per concept
SELECT is((SELECT array_agg(format('%s: %s %s (the concept is %s %s)', p.fn, p.name, p.type, c.param, c.type) ORDER BY 1)
             FROM vocab_params p JOIN vocab_concepts c ON c.param = p.name
            WHERE p.type <> c.type),
          NULL, 'a parameter named for a concept has the concept''s type');
SELECT is((SELECT array_agg(format('%s: %s (say %s)', p.fn, p.name, a.canonical) ORDER BY 1)
             FROM vocab_params p JOIN vocab_aliases a ON a.alias = p.name),
          NULL, 'no parameter uses another spelling of a concept');
SELECT is((SELECT array_agg(format('%s: %s', p.fn, p.name) ORDER BY 1)
             FROM vocab_params p
            WHERE (p.name ~ '(^|_)(id|ids|type|types)$' OR p.name ~ '^(type|types)_')
              AND NOT EXISTS (SELECT FROM vocab_concepts c WHERE c.param = p.name)),
          NULL, 'every id and type parameter is in the concept map (add new concepts to vocab_concepts)');
SELECT is((SELECT array_agg(format('%s: %s', p.name, types) ORDER BY 1)
             FROM (SELECT p.name, string_agg(DISTINCT p.type::text, ', ') AS types
                     FROM vocab_params p GROUP BY p.name HAVING count(DISTINCT p.type) > 1) p
            WHERE NOT EXISTS (SELECT FROM vocab_homonyms h WHERE h.param = p.name)),
          NULL, 'a parameter name has one type in every public function (but the homonyms kept for compatibility)');
SELECT is((SELECT array_agg(format('%s: %s', p.fn, p.name) ORDER BY 1)
             FROM vocab_params p
            WHERE p.name ~ '_id$' AND p.type NOT IN ('uuid'::regtype, 'bigint'::regtype, 'text'::regtype)),
          NULL, 'an id is a uuid, a bigint or (stream_id) text');

-- 2. every duration an interval
SELECT is((SELECT array_agg(format('%s: %s %s', p.fn, p.name, p.type) ORDER BY 1)
             FROM vocab_params p
            WHERE p.name ~ '(_ms|_msec|_millis|_milliseconds|_sec|_secs|_seconds|_minutes|_hours)$'
               OR (p.name ~ '(timeout|delay|lease|interval|duration|older_than|_age$|^age$|ttl)'
                   AND p.type <> 'interval'::regtype)),
          NULL, 'every duration parameter is an interval, named without a unit');
SELECT is((SELECT array_agg(format('%s: %s', p.fn, p.name) ORDER BY 1)
             FROM vocab_params p
            WHERE p.type = 'interval'::regtype
              AND NOT EXISTS (SELECT FROM vocab_concepts c WHERE c.param = p.name)),
          NULL, 'every interval parameter is in the concept map');

-- 2b. every duration an interval in results too: a column of a view (or
-- table, composite type) in schema ocx, an OUT/TABLE column of a public
-- function, or the result of one without OUT columns (named as the function)
-- that is a duration given as a number, by its name (a unit: _seconds, _ms,
-- ...; or a duration word on a number: age, lag, timeout, delay ...), fails
-- unless it is a deprecated numeric twin listed here: kept for one release
-- next to an interval column that says the same, and marked deprecated in the
-- catalog (its column's COMMENT, a function's COMMENT) and in docs/reference.md
-- ("Vocabulary", rule 4).  Metrics for Prometheus are numbers of seconds by
-- convention, but they are rows of ocx.stats and lines of ocx.metrics(), not
-- columns, so this walk does not see them.
CREATE TEMP TABLE vocab_numeric_twins (obj text NOT NULL, col text NOT NULL, twin text NOT NULL, why text NOT NULL,
                                       PRIMARY KEY (obj, col));
INSERT INTO vocab_numeric_twins VALUES
    ('ocx.projection_status', 'lag_seconds', 'lag', 'since 0.1.0; lag (interval, 0.3.0) says the same; removed in 0.4.0');

-- Whether a result column named name, of type type, is a duration as a number.
CREATE FUNCTION pg_temp.vocab_numeric_duration(name text, type regtype) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT name ~ '(^|_)(ms|msec|msecs|millis|milliseconds|us|usec|micros|microseconds|s|sec|secs|seconds|min|mins|minutes|hours|days)$'
        OR (type IN ('smallint', 'integer', 'bigint', 'real', 'double precision', 'numeric')
            AND name ~ '(^|_)(age|lag|timeout|delay|lease|interval|duration|elapsed|latency|ttl|wait|backoff|uptime|period|older_than)$')
$$;

-- The result columns: of relations (not internal ones, _*) and of the public functions.
CREATE TEMP VIEW vocab_results AS
SELECT c.oid::regclass::text AS obj, a.attname::text AS col, a.atttypid::regtype AS type,
       col_description(c.oid, a.attnum) AS said
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') AND c.relname !~ '^_'
UNION ALL
SELECT v.fn::text, o.name, o.type::regtype, obj_description(v.oid, 'pg_proc')
  FROM vocab_public v,
       LATERAL (SELECT n.name, t.type
                  FROM unnest(v.proargnames) WITH ORDINALITY n(name, ord)
                  JOIN unnest(v.proallargtypes) WITH ORDINALITY t(type, ord) USING (ord)
                  JOIN unnest(v.proargmodes) WITH ORDINALITY m(mode, ord) USING (ord)
                 WHERE m.mode IN ('o', 'b', 't')) o
UNION ALL
SELECT v.fn::text, v.proname::text, p.prorettype::regtype, obj_description(v.oid, 'pg_proc')
  FROM vocab_public v JOIN pg_proc p ON p.oid = v.oid
 WHERE NOT coalesce(v.proargmodes && ARRAY['o', 'b', 't']::"char"[], false);

SELECT is((SELECT array_agg(format('%s %s', n, pg_temp.vocab_numeric_duration(n, t::regtype)) ORDER BY n)
             FROM (VALUES ('lag_seconds', 'double precision', true), ('timeout_ms', 'integer', true),
                          ('age', 'bigint', true), ('retry_delay', 'numeric', true), ('wait_secs', 'interval', true),
                          ('lag_events', 'bigint', false), ('horizon_age', 'interval', false),
                          ('max_attempts', 'integer', false), ('rebuild_rate', 'double precision', false),
                          ('status', 'text', false)) x(n, t, want)
            WHERE pg_temp.vocab_numeric_duration(n, t::regtype) IS DISTINCT FROM want),
          NULL, 'the pattern finds a duration as a number by its name (and only one)');
SELECT cmp_ok((SELECT count(*) FROM vocab_results r JOIN pg_class c ON c.oid::regclass::text = r.obj WHERE c.relkind = 'v'),
              '>', 50::bigint, 'the walk finds the views'' columns');
SELECT cmp_ok((SELECT count(*) FROM vocab_results r WHERE r.obj ~ '\('), '>', 40::bigint,
              'the walk finds the functions'' result columns');
SELECT is((SELECT array_agg(format('%s: %s %s', r.obj, r.col, r.type) ORDER BY 1)
             FROM vocab_results r
            WHERE pg_temp.vocab_numeric_duration(r.col, r.type)
              AND NOT EXISTS (SELECT FROM vocab_numeric_twins w WHERE w.obj = r.obj AND w.col = r.col)),
          NULL, 'every duration in a result column is an interval, named without a unit (but the deprecated numeric twins)');
SELECT is((SELECT array_agg(format('%s: %s (twin %s)', w.obj, w.col, w.twin) ORDER BY 1)
             FROM vocab_numeric_twins w
            WHERE NOT EXISTS (SELECT FROM vocab_results r
                               WHERE r.obj = w.obj AND r.col = w.col
                                 AND pg_temp.vocab_numeric_duration(r.col, r.type) AND r.type <> 'interval'::regtype)
               OR NOT EXISTS (SELECT FROM vocab_results r
                               WHERE r.obj = w.obj AND r.col = w.twin AND r.type = 'interval'::regtype)),
          NULL, 'every deprecated numeric twin is a number and has its interval column next to it');
SELECT is((SELECT array_agg(format('%s: %s', w.obj, w.col) ORDER BY 1)
             FROM vocab_numeric_twins w
            WHERE NOT EXISTS (SELECT FROM vocab_results r
                               WHERE r.obj = w.obj AND r.col = w.col
                                 AND r.said ~* ('deprecated.*\m' || w.twin || '\M'))),
          NULL, 'every deprecated numeric twin says so in its COMMENT, naming its interval column');

-- 3. every define_X creates or replaces, named by name or type
SELECT is((SELECT array_agg(v.fn::text ORDER BY 1) FROM vocab_public v
            WHERE v.proname ~ '^define_' AND NOT EXISTS (SELECT FROM vocab_defines d WHERE d.fn = v.oid)),
          NULL, 'every define_X has a row in vocab_defines (how to call it)');
SELECT is((SELECT array_agg(v.fn::text ORDER BY 1) FROM vocab_public v
            WHERE v.proname ~ '^define_'
              AND (v.proargnames[1] NOT IN ('name', 'type') OR v.proargtypes[0] <> 'text'::regtype)),
          NULL, 'every define_X takes the object''s name (name or type text) first');
SELECT is((SELECT array_agg(v.fn::text ORDER BY 1) FROM vocab_public v
            WHERE v.proname ~ '^create_' AND NOT EXISTS (SELECT FROM vocab_deprecated d WHERE d.fn = v.oid)),
          NULL, 'no create_X besides the deprecated ones: define_X creates');

-- the callers: an ocx_admin member (the least privileged role that may
-- define) and an ocx_writer member (who may not)
GRANT SELECT ON vocab_concepts, vocab_aliases, vocab_homonyms, vocab_defines, vocab_deprecated, vocab_public, vocab_params,
                vocab_numeric_twins, vocab_results TO PUBLIC;
CREATE ROLE vocab_admin;
CREATE ROLE vocab_writer;
GRANT ocx_admin TO vocab_admin;
GRANT ocx_writer TO vocab_writer;

-- Runs sql; NULL when it succeeds, else its SQLSTATE.
CREATE FUNCTION public.vocab_try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

SET ROLE vocab_admin;
SET client_min_messages = error;     -- the deprecation WARNINGs are test/sql/vocabulary.sql's
SELECT is((SELECT array_agg(format('%s: %s', d.fn, r) ORDER BY 1)
             FROM vocab_defines d,
                  LATERAL (SELECT coalesce(public.vocab_try(format(d.call, 'vocab.Twice_' || d.fn::oid)), '')
                               || '/' || coalesce(public.vocab_try(format(d.call, 'vocab.Twice_' || d.fn::oid)), '') AS r) x
            WHERE r <> '/'),
          NULL, 'every define_X, called twice with the same name, creates and then replaces (as an ocx_admin member)');
SELECT is((SELECT array_agg(format('%s: %s', d.fn, x.r) ORDER BY 1)
             FROM vocab_defines d, unnest(ARRAY['1starts_with_a_digit', 'has space', 'quote''s', 'slash/ed',
                                              'ümlaut', '', repeat('n', 64)]) AS b(bad),
                  LATERAL (SELECT b.bad || ' -> ' || coalesce(public.vocab_try(format(d.call, b.bad)), 'accepted') AS r) x
            WHERE x.r !~ ' -> OX500$'
              -- 0.2.0's codes for an empty name stay for one release (docs/upgrading.md)
              AND NOT (b.bad = '' AND x.r ~ ' -> OX(1[0-9][0-9]|2[0-9][0-9]|3[0-9][0-9]|4[0-9][0-9])$')),
          NULL, 'every define_X refuses a name that breaks the one name rule with OX500');
SELECT is((SELECT array_agg(d.fn::text ORDER BY 1) FROM vocab_defines d
            WHERE public.vocab_try(format(d.call, left('n' || d.fn::oid || repeat('n', 63), 63))) IS NOT NULL),
          NULL, 'every define_X accepts a name of 63 bytes');
SELECT is((SELECT array_agg(format('%s: %s', d.fn, r) ORDER BY 1)
             FROM vocab_defines d,
                  LATERAL (SELECT coalesce(public.vocab_try(format(d.call, 'Vocab_other:a-b.c' || d.fn::oid)), 'ok') AS r) x
            WHERE r <> 'ok'),
          NULL, 'every define_X accepts letters, digits, "_", ".", ":" and "-"');
RESET ROLE;
SET ROLE vocab_writer;
SELECT is((SELECT array_agg(format('%s: %s', d.fn, r) ORDER BY 1)
             FROM vocab_defines d,
                  LATERAL (SELECT coalesce(public.vocab_try(format(d.call, 'vocab.Writer' || d.fn::oid)), 'accepted') AS r) x
            WHERE r <> '42501'),
          NULL, 'no define_X is open to an ocx_writer member (42501)');
RESET ROLE;

-- 4. every drop_X(name or type, if_exists boolean DEFAULT false)
SELECT is((SELECT array_agg(v.fn::text ORDER BY 1) FROM vocab_public v
            WHERE v.proname ~ '^drop_'
              AND NOT (v.pronargs = 2 AND v.pronargdefaults = 1
                       AND v.proargnames[1] IN ('name', 'type') AND v.proargtypes[0] = 'text'::regtype
                       AND v.proargnames[2] = 'if_exists' AND v.proargtypes[1] = 'boolean'::regtype
                       AND pg_get_function_arguments(v.oid) ~ 'if_exists boolean DEFAULT false$')),
          NULL, 'every drop_X is (name or type text, if_exists boolean DEFAULT false)');
SET ROLE vocab_admin;
SELECT is((SELECT array_agg(format('%s: %s', v.fn, r) ORDER BY 1)
             FROM vocab_public v,
                  LATERAL (SELECT coalesce(public.vocab_try(format('SELECT ocx.%I(%L, if_exists => true)',
                                                                   v.proname, 'vocab.Missing')), 'ok') AS r) x
            WHERE v.proname ~ '^drop_' AND r <> 'ok'),
          NULL, 'every drop_X of a missing object with if_exists => true succeeds');
SELECT is((SELECT array_agg(format('%s: %s', v.fn, r) ORDER BY 1)
             FROM vocab_public v,
                  LATERAL (SELECT coalesce(public.vocab_try(format('SELECT ocx.%I(%L)', v.proname, 'vocab.Missing')),
                                           'accepted') AS r) x
            WHERE v.proname ~ '^drop_' AND r !~ '^OX[0-9][0-9]0$'),
          NULL, 'every drop_X of a missing object without if_exists raises its unknown_X SQLSTATE (OXnn0)');
SELECT is((SELECT array_agg(format('%s: %s', d.fn, r) ORDER BY 1)
             FROM vocab_defines d
             JOIN pg_proc dp ON dp.oid = d.fn
             JOIN vocab_public v ON v.proname = regexp_replace(dp.proname, '^define_', 'drop_'),
                  LATERAL (SELECT coalesce(public.vocab_try(format(d.call, 'vocab.Dropped' || d.fn::oid)), '')
                                  || '/' || coalesce(public.vocab_try(format('SELECT ocx.%I(%L)', v.proname,
                                                                             'vocab.Dropped' || d.fn::oid)), '') AS r) x
            WHERE r <> '/'),
          NULL, 'every drop_X drops what its define_X defined');
RESET ROLE;

-- 5. a COMMENT on every function (internal ones too) and view
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
            WHERE p.pronamespace = 'ocx'::regnamespace
              AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''),
          NULL, 'every function in schema ocx has a COMMENT');
SELECT is((SELECT array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_class c
            WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('v', 'm')
              AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''),
          NULL, 'every view in schema ocx has a COMMENT');

-- 6. the deprecated spellings: kept, said so, and their replacement exists
SELECT is((SELECT array_agg(d.fn::text ORDER BY 1) FROM vocab_deprecated d
            WHERE obj_description(d.fn, 'pg_proc') !~ '^deprecated \(WARNING OX5[0-9][0-9]\)'
               OR NOT EXISTS (SELECT FROM vocab_public v WHERE v.proname = d.replacement)),
          NULL, 'every deprecated function says so in its COMMENT (with the WARNING''s SQLSTATE) and its replacement exists');

-- behaviour the rules above name, once each
SET ROLE vocab_admin;
SELECT ocx.define_command_handler('vocab.Cmd', NULL);
SELECT ocx.define_command_handler('vocab.Cmd', 'public.vocab_cmd(ocx.command)', '{"max_attempts": 2}');
SELECT is((SELECT handler::text || ' ' || max_attempts FROM ocx.command_handlers WHERE command_type = 'vocab.Cmd'),
          'vocab_cmd(ocx.command) 2', 'define_command_handler replaces the handler and its retry policy');
SELECT ocx.define_subscription('vocab_sub', types => '{A}', lease => '10 seconds');
SELECT ocx.define_subscription('vocab_sub', categories => '{b}', lease => '20 seconds');
SELECT is((SELECT format('%s %s %s', types, categories, lease) FROM ocx.subscriptions WHERE name = 'vocab_sub'),
          ' {b} 00:00:20', 'define_subscription replaces the filters and the lease');
SELECT throws_ok($$SELECT ocx.define_subscription('vocab_sub', partitions => 2)$$, 'OX301', NULL,
                 'the partitions of a subscription cannot change (OX301)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
