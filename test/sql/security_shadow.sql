-- Objects planted in public and pg_temp, ahead of pg_catalog on the
-- search_path, are never called by ocx: SQL bodies were resolved at CREATE
-- time and C code schema-qualifies every name in its SPI queries.  Every
-- shadow raises when called, so a call shows up as an error below; the
-- controls at the end prove the shadows do capture unqualified names.
\set SHOW_CONTEXT never

CREATE FUNCTION public.shadow_raise(what text) RETURNS boolean
    LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'shadow % called', what; END$$;

-- functions ocx's SQL uses, with signatures that beat pg_catalog's
CREATE FUNCTION public.jsonb_build_object(text, text) RETURNS jsonb
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('jsonb_build_object') THEN '{}'::jsonb END$$;
CREATE FUNCTION public.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('now') THEN NULL::timestamptz END$$;
CREATE FUNCTION public.nextval(regclass) RETURNS bigint
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('nextval') THEN 0::bigint END$$;
CREATE FUNCTION public.split_part(text, text, integer) RETURNS text
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('split_part') THEN ''::text END$$;
CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('unnest') THEN ''::text END$$;
CREATE FUNCTION public.current_setting(text, boolean) RETURNS text
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('current_setting') THEN ''::text END$$;
CREATE FUNCTION public.pg_current_snapshot() RETURNS pg_snapshot
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('pg_current_snapshot') THEN NULL::pg_snapshot END$$;
CREATE FUNCTION public.hashtext(text) RETURNS integer
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('hashtext') THEN 0 END$$;
CREATE FUNCTION public.gen_random_uuid() RETURNS uuid
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('gen_random_uuid') THEN NULL::uuid END$$;

-- operators
CREATE FUNCTION public.shadow_text_eq(text, text) RETURNS boolean
    LANGUAGE sql AS $$SELECT public.shadow_raise('=(text,text)')$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.shadow_text_eq);
CREATE FUNCTION public.shadow_int8_eq(bigint, bigint) RETURNS boolean
    LANGUAGE sql AS $$SELECT public.shadow_raise('=(bigint,bigint)')$$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.shadow_int8_eq);
CREATE FUNCTION public.shadow_int8_ge(bigint, bigint) RETURNS boolean
    LANGUAGE sql AS $$SELECT public.shadow_raise('>=(bigint,bigint)')$$;
CREATE OPERATOR public.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.shadow_int8_ge);
CREATE FUNCTION public.shadow_int8_pl(bigint, bigint) RETURNS bigint
    LANGUAGE sql AS $$SELECT CASE WHEN public.shadow_raise('+(bigint,bigint)') THEN 0::bigint END$$;
CREATE OPERATOR public.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.shadow_int8_pl);
CREATE FUNCTION public.shadow_xid8_lt(xid8, xid8) RETURNS boolean
    LANGUAGE sql AS $$SELECT public.shadow_raise('<(xid8,xid8)')$$;
CREATE OPERATOR public.< (LEFTARG = xid8, RIGHTARG = xid8, FUNCTION = public.shadow_xid8_lt);
CREATE FUNCTION public.shadow_uuid_eq(uuid, uuid) RETURNS boolean
    LANGUAGE sql AS $$SELECT public.shadow_raise('=(uuid,uuid)')$$;
CREATE OPERATOR public.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.shadow_uuid_eq);

-- tables named like ocx's, in public and pg_temp
CREATE TABLE public.events (stream_id text, stream_version bigint, type text, data jsonb);
CREATE TABLE public.streams (stream_id text, version bigint);
CREATE TEMP TABLE events (stream_id text, stream_version bigint, type text, data jsonb);
CREATE TEMP TABLE streams (stream_id text, version bigint);
CREATE TEMP VIEW event AS SELECT 1 AS x;
CREATE TEMP TABLE subscriptions (name text);
CREATE TEMP TABLE commands (command_id uuid, status text);

-- the hostile path: temp objects first, then public, then pg_catalog
SET search_path = pg_temp, public, pg_catalog;

-- appends: single event (fast path), batch, with ids (idempotency check),
-- expected versions, a retry, CloudEvents
SELECT ocx.append_event('shadow-1', 0, 'Opened', '{"n": 1}');
SELECT ocx.append('shadow-1', 1, '[{"type": "Deposited", "data": {"n": 2}}, {"type": "Deposited", "data": {"n": 3}}]');
SELECT ocx.append('shadow-1', NULL, '{"type": "Noted", "data": {"n": 4}}');
SELECT ocx.append('shadow-2', NULL, '[{"id": "6c9a7d1e-0b3a-4f57-9a43-000000000001", "type": "Opened", "data": {}}]');
SELECT ocx.append('shadow-2', NULL, '[{"id": "6c9a7d1e-0b3a-4f57-9a43-000000000001", "type": "Opened", "data": {}}]');
SELECT ocx.append('shadow-2', 1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT ocx.append_event('shadow-2', 3, 'C', '{}', '{"k": "v"}', '6c9a7d1e-0b3a-4f57-9a43-000000000002');
SELECT ocx.append_cloudevents('shadow-3', 0,
    '{"specversion": "1.0", "id": "ce-1", "source": "/shadow", "type": "Pinged", "data": {"ok": true}}');
-- a conflict is still detected and reported
SELECT ocx.append_event('shadow-1', 1, 'Late', '{}');
\echo :LAST_ERROR_SQLSTATE

-- reads
SELECT stream_id, stream_version, type, data FROM ocx.read_stream('shadow-1');
SELECT stream_id, stream_version, type FROM ocx.read_stream('shadow-2', 2, 2);
SELECT ocx.stream_version('shadow-1'), ocx.stream_version('shadow-none'), ocx.category('shadow-1');
SELECT stream_id, stream_version, type FROM ocx.read_category('shadow', NULL, NULL)
 WHERE stream_id OPERATOR(pg_catalog.=) ANY (ARRAY['shadow-1', 'shadow-2', 'shadow-3'])
 ORDER BY "cursor";
SELECT count(*) FROM ocx.read_all(NULL, NULL, ARRAY['Pinged', 'Noted']) WHERE stream_id LIKE 'shadow-%';
SELECT ocx.to_cloudevent(e) IS NOT NULL AS ce FROM ocx.read_stream('shadow-3') e;

-- aggregates: definition, replay, snapshots, time travel
SELECT ocx.define_aggregate('shadow_agg', reducer => '{"*": [{"append": "seen", "from": "$version"}]}',
                            snapshot_every => 2);
SELECT state, version FROM ocx.load('shadow_agg', 'shadow-1');
SELECT ocx.snapshot('shadow_agg', 'shadow-2');
SELECT state, version FROM ocx.load('shadow_agg', 'shadow-2');
SELECT state, version FROM ocx.load('shadow_agg', 'shadow-1', 2);

-- observability
SELECT count(*) > 0 AS stats FROM ocx.stats;
SELECT ocx.metrics() IS NOT NULL AS metrics;
SELECT count(*) AS traced FROM ocx.trace('6c9a7d1e-0b3a-4f57-9a43-0000000000ff');

-- the bus: subscriptions, commands, ephemeral messages
SELECT ocx.define_subscription('shadow_sub', NULL, ARRAY['shadow']);
SELECT count(*) AS polled FROM ocx.poll('shadow_sub', 100);
SELECT ocx.ack('shadow_sub', (SELECT e."cursor" FROM ocx.read_category('shadow', NULL, NULL) e
                              ORDER BY e."cursor" DESC LIMIT 1));
SELECT ocx.send_command('shadow.Do', '{"a": "b"}', command_id => '6c9a7d1e-0b3a-4f57-9a43-0000000000c1');
SELECT count(*) AS claimed, min(claim_token::text) AS shadow_token FROM ocx.claim_commands(ARRAY['shadow.Do'], 1) \gset
SELECT :claimed AS claimed;
SELECT ocx.complete_command('6c9a7d1e-0b3a-4f57-9a43-0000000000c1', '{"done": true}', :'shadow_token');
SELECT ocx.publish('shadow_channel', '{"a": 1}');
SELECT ocx.drop_subscription('shadow_sub');

-- nothing reached the planted tables
RESET search_path;
SELECT (SELECT count(*) FROM pg_temp.events) AS temp_events,
       (SELECT count(*) FROM public.events) AS public_events,
       (SELECT count(*) FROM pg_temp.streams) + (SELECT count(*) FROM public.streams) AS planted_streams;

-- controls: the shadows do capture unqualified names on that path
SET search_path = pg_temp, public, pg_catalog;
SELECT jsonb_build_object('a', 'b');
SELECT split_part('a-b', '-', 1);
SELECT 'a'::text = 'b'::text;
SELECT 1::bigint + 2::bigint;
SELECT count(*) FROM events;
RESET search_path;

DELETE FROM ocx.aggregates WHERE aggregate_type = 'shadow_agg';
DELETE FROM ocx.commands WHERE type = 'shadow.Do';
DROP TABLE pg_temp.subscriptions, pg_temp.commands;
DROP TABLE pg_temp.events, pg_temp.streams, public.events, public.streams;
DROP VIEW pg_temp.event;
DROP OPERATOR public.= (text, text), public.= (bigint, bigint), public.>= (bigint, bigint),
    public.+ (bigint, bigint), public.< (xid8, xid8), public.= (uuid, uuid);
DROP FUNCTION public.shadow_text_eq(text, text), public.shadow_int8_eq(bigint, bigint),
    public.shadow_int8_ge(bigint, bigint), public.shadow_int8_pl(bigint, bigint),
    public.shadow_xid8_lt(xid8, xid8), public.shadow_uuid_eq(uuid, uuid),
    public.jsonb_build_object(text, text), public.now(), public.nextval(regclass),
    public.split_part(text, text, integer), public.unnest(text[]),
    public.current_setting(text, boolean), public.pg_current_snapshot(), public.gen_random_uuid(),
    public.hashtext(text);
DROP FUNCTION public.shadow_raise(text);
