-- The direct write of a single event (src/directappend.c, issue 16): which
-- appends take it (direct_appends() counts them), which fall back to the SQL
-- statement, and that both write the same rows with the same errors.
\set SHOW_CONTEXT never
-- how many appends took the direct path since the last call (a DEBUG1 line
-- names each too, but DEBUG output also carries PostgreSQL's own)
CREATE FUNCTION direct_appends() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint := ocx._direct_appends();
    p bigint := COALESCE(NULLIF(current_setting('ocx_test.direct', true), ''), '0')::bigint;
BEGIN
    PERFORM set_config('ocx_test.direct', n::text, false);
    RETURN n - p;
END $$;
SELECT direct_appends() = 0 AS nothing_direct_yet;

-- taken: a new stream, then an existing one, with every expected-version rule
SELECT ocx.append_event('direct-1', NULL, 'Opened', '{"n": 1}');
SELECT direct_appends();
SELECT ocx.append_event('direct-1', 1, 'Deposited', '{"n": 2}');
SELECT direct_appends();
SELECT ocx.append_event('direct-1', NULL, 'Deposited', '{"n": 3}');
SELECT direct_appends();
SELECT ocx.append_event('direct-1', ocx.stream_exists(), 'Deposited', '{"n": 4}');
SELECT direct_appends();
SELECT ocx.append_event('direct-2', 0, 'Opened', '{"n": 1}');
SELECT direct_appends();
SELECT ocx.append('direct-2', 1, '{"type": "Deposited", "data": {"n": 2}, "correlation_id": "8c7c5d6e-0a4b-4e57-9b7a-0d1c2e3f4a5b"}');
SELECT direct_appends();
-- conflicts: the same errors as the statement's
SELECT ocx.append_event('direct-1', 2, 'Deposited', '{"n": 0}');
SELECT direct_appends();
SELECT ocx.append_event('direct-1', 0, 'Deposited', '{"n": 0}');
SELECT direct_appends();
SELECT ocx.append_event('direct-3', 5, 'Deposited', '{"n": 0}');
SELECT direct_appends();
SELECT ocx.append_event('direct-3', ocx.stream_exists(), 'Deposited', '{"n": 0}');
SELECT direct_appends();
-- several appends to one stream in one statement see each other
SELECT ocx.append_event('direct-4', NULL, 'Tick', pg_catalog.jsonb_build_object('i', i))
  FROM generate_series(1, 3) i;
SELECT direct_appends();

-- taken: a batch (one multi-insert), to an existing and to a new stream
SELECT ocx.append('direct-1', NULL, '[{"type": "Deposited", "data": {"n": 5}},
                                      {"type": "Deposited", "data": {"n": 6}}]');
SELECT direct_appends();
SELECT ocx.append('direct-6', 0, '[{"type": "Opened", "data": {"n": 1}},
                                   {"type": "Deposited", "data": {"n": 2}, "metadata": {"m": 1}},
                                   {"type": "Deposited", "data": {"n": 3}}]');
SELECT direct_appends();
SELECT ocx.append('direct-6', 2, '[{"type": "Deposited", "data": {"n": 0}}]');
SELECT direct_appends();
-- taken: event ids (idempotency, the write in a subtransaction) and tags
SELECT ocx.append_event('direct-1', NULL, 'Deposited', '{"n": 7}', '{}',
                        'a81bc81b-dead-4e5d-abff-90865d1e13b1');
SELECT direct_appends();
SELECT ocx.append('direct-6', 3, '[{"type": "Deposited", "data": {"n": 4}, "tags": ["t1"]},
                                   {"type": "Deposited", "data": {"n": 5}}]');
SELECT direct_appends();
-- an exact retry writes nothing (the idempotent answer, no write at all)
SELECT ocx.append_event('direct-1', NULL, 'Deposited', '{"n": 7}', '{}',
                        'a81bc81b-dead-4e5d-abff-90865d1e13b1');
SELECT direct_appends();
-- tags stored sorted and distinct, found through the GIN index (no scan of the table)
SELECT ocx.append('direct-8', 0, '{"type": "Tagged", "data": {}, "tags": ["z", "a", "z"]}');
SELECT direct_appends();
SET enable_seqscan = off;
SELECT stream_id, stream_version, tags FROM ocx.events WHERE tags @> ARRAY['z'] ORDER BY 1, 2;
SELECT stream_id, stream_version FROM ocx.events WHERE tags @> ARRAY['t1'] ORDER BY 1, 2;
RESET enable_seqscan;
-- append_if: its tagged event and one with an id
SELECT ocx.append_if('{"stream_id": "direct-9", "type": "Reserved", "tags": ["seat:1"]}',
                     '{"tags": ["seat:1"]}') IS NOT NULL AS appended;
SELECT direct_appends();
SELECT ocx.append_if('{"stream_id": "direct-9", "type": "Reserved", "tags": ["seat:2"],
                       "id": "5f0c5f0c-1111-4e5d-abff-90865d1e13b1"}',
                     '{"tags": ["seat:2"]}') IS NOT NULL AS appended;
SELECT direct_appends();
-- (terse: the detail names the matching event's cursor)
\set VERBOSITY terse
SELECT ocx.append_if('{"stream_id": "direct-9", "type": "Reserved", "tags": ["seat:1"]}',
                     '{"tags": ["seat:1"]}');
\set VERBOSITY default
SELECT direct_appends();
-- append_if's condition check reads events_tags_idx without an SQL statement
-- (dcb.c); when it cannot (here: the index renamed) it runs the statement.
-- The same outcomes, the same errors, each run rolled back at its end.
SELECT "cursor" AS seat1 FROM ocx.read_tagged(ARRAY['seat:1']) \gset
CREATE FUNCTION if_cases(statement boolean, seat1 text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    cases text[] := ARRAY[
        '{"tags": ["seat:1"]}',
        '{"tags": ["seat:1"], "types": ["Other"]}',
        '{"tags": ["seat:1"], "types": ["Other", "Reserved"]}',
        '{"tags": ["seat:1", "seat:2"]}',
        '{"tags": ["seat:1"], "after": "' || seat1 || '"}',
        '{"tags": ["seat:2"], "after": "' || seat1 || '"}',
        '{"tags": ["seat:3"]}'];
    c text;
    st text;
    msg text;
    det text;
    lines text[] := '{}';
BEGIN
  BEGIN
    IF statement THEN
        ALTER INDEX ocx.events_tags_idx RENAME TO events_tags_idx_renamed;
    END IF;
    FOREACH c IN ARRAY cases LOOP
        BEGIN
            PERFORM ocx.append_if('{"stream_id": "direct-10", "type": "Reserved", "tags": ["seat:1", "seat:2", "seat:3"]}', c::jsonb);
            lines := lines || format('%s: appended', c);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
            lines := lines || format('%s: %s %s (%s)', c, st, msg, det);
        END;
    END LOOP;
    RAISE SQLSTATE 'ZX999';
  EXCEPTION WHEN SQLSTATE 'ZX999' THEN
    RETURN lines;
  END;
END $$;
-- (cursors: SEAT1 is direct-9's first event, C the one case 2 appends, in
-- each run at another place)
CREATE TEMP TABLE if_runs AS
SELECT false AS statement, i, regexp_replace(replace(l, :'seat1', 'SEAT1'), 'Event [0-9]+/[0-9]+', 'Event C') AS line
  FROM unnest(if_cases(false, :'seat1')) WITH ORDINALITY AS u(l, i);
INSERT INTO if_runs
SELECT true, i, regexp_replace(replace(l, :'seat1', 'SEAT1'), 'Event [0-9]+/[0-9]+', 'Event C')
  FROM unnest(if_cases(true, :'seat1')) WITH ORDINALITY AS u(l, i);
SELECT i, line FROM if_runs WHERE NOT statement ORDER BY i;
SELECT d.i, d.line AS direct, s.line AS statement
  FROM if_runs d JOIN if_runs s ON s.i = d.i AND s.statement
 WHERE NOT d.statement AND d.line IS DISTINCT FROM s.line;
SELECT count(*) AS direct_10_rolled_back FROM ocx.events WHERE stream_id = 'direct-10';
SELECT indexrelid::regclass FROM pg_index WHERE indexrelid = 'ocx.events_tags_idx'::regclass;
DROP FUNCTION if_cases(boolean, text);

-- Events with ids, each outcome on both paths: the direct one, then the
-- statements (ocx.notify_mode = immediate sends every append there), each
-- run rolled back at its end (a raised error undoes the block, the lines
-- stay).  Every line must be the same but the path.
CREATE FUNCTION id_cases() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    cases text[] := ARRAY[
        -- stream, expected, events
        'idc-1|0|{"type": "A", "id": "00000000-0000-4000-8000-000000000001", "tags": ["k"]}',
        'idc-1|0|{"type": "A", "id": "00000000-0000-4000-8000-000000000001", "tags": ["k"]}',
        'idc-1||{"type": "A", "id": "00000000-0000-4000-8000-000000000001", "tags": ["k"]}',
        'idc-1|1|{"type": "A", "id": "00000000-0000-4000-8000-000000000001", "tags": ["k"]}',
        'idc-1|5|{"type": "A", "id": "00000000-0000-4000-8000-000000000001", "tags": ["k"]}',
        'idc-1|0|{"type": "B", "id": "00000000-0000-4000-8000-000000000001"}',
        'idc-2||{"type": "A", "id": "00000000-0000-4000-8000-000000000001"}',
        'idc-1|1|[{"type": "A", "id": "00000000-0000-4000-8000-000000000002"}, {"type": "A", "id": "00000000-0000-4000-8000-000000000003", "tags": ["k", "m"]}]',
        'idc-1|1|[{"type": "A", "id": "00000000-0000-4000-8000-000000000002"}, {"type": "A", "id": "00000000-0000-4000-8000-000000000003", "tags": ["k", "m"]}]',
        'idc-1|3|[{"type": "A", "id": "00000000-0000-4000-8000-000000000002"}, {"type": "A", "id": "00000000-0000-4000-8000-000000000004"}]',
        'idc-1|3|{"type": "A", "id": "00000000-0000-4000-8000-000000000005", "tags": ["k"]}',
        'idc-1|1|{"type": "A", "id": "00000000-0000-4000-8000-000000000006"}',
        'idc-3|-1|{"type": "A", "id": "00000000-0000-4000-8000-000000000007"}',
        'idc-1|-1|{"type": "A", "id": "00000000-0000-4000-8000-000000000007"}',
        -- another tenant''s event holds the id: invisible here, the unique index refuses
        'acme:idc-4||{"type": "A", "id": "00000000-0000-4000-8000-000000000008"}',
        'idc-5||{"type": "A", "id": "00000000-0000-4000-8000-000000000008"}',
        'acme:idc-4||{"type": "A", "id": "00000000-0000-4000-8000-000000000009"}',
        'idc-4||{"type": "A", "id": "00000000-0000-4000-8000-00000000000a"}',
        -- a tombstone: refused whatever the expected version
        'idc-6|0|{"type": "A"}',
        'delete:idc-6|1|',
        'idc-6||{"type": "A", "id": "00000000-0000-4000-8000-00000000000b"}',
        'idc-6|1|{"type": "A", "id": "00000000-0000-4000-8000-00000000000b"}',
        'idc-6|7|{"type": "A", "id": "00000000-0000-4000-8000-00000000000b"}',
        'idc-6|0|{"type": "A", "id": "00000000-0000-4000-8000-00000000000b"}',
        'idc-6|-1|{"type": "A", "id": "00000000-0000-4000-8000-00000000000b"}'];
    c text;
    f text[];
    stream text;
    v bigint;
    n bigint;
    st text;
    msg text;
    det text;
    lines text[] := '{}';
BEGIN
  BEGIN
    FOREACH c IN ARRAY cases LOOP
        f := string_to_array(c, '|');
        stream := f[1];
        IF stream LIKE 'acme:%' THEN
            PERFORM set_config('ocx.tenant', 'acme', true);
            stream := substr(stream, 6);
        END IF;
        IF stream LIKE 'delete:%' THEN
            PERFORM ocx.delete_stream(substr(stream, 8), f[2]::bigint, hard => true);
            lines := lines || format('%s deleted', substr(stream, 8));
            CONTINUE;
        END IF;
        n := ocx._direct_appends();
        BEGIN
            v := ocx.append(stream, NULLIF(f[2], '')::bigint, f[3]::jsonb);
            lines := lines || format('%s %s: version %s, %s', stream, COALESCE(NULLIF(f[2], ''), 'any'), v,
                               CASE WHEN ocx._direct_appends() > n THEN 'direct'
                                    ELSE 'not direct' END);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
            lines := lines || format('%s %s: %s %s (%s)', stream, COALESCE(NULLIF(f[2], ''), 'any'), st, msg, det);
        END;
        PERFORM set_config('ocx.tenant', '', true);
    END LOOP;
    lines := lines || (SELECT format('stored: %s', string_agg(format('%s/%s %s %s', stream_id, stream_version,
                                                             right(event_id::text, 2), tags), ', '
                                                      ORDER BY stream_id, stream_version))
                   FROM ocx.events WHERE stream_id LIKE 'idc-%');
    RAISE SQLSTATE 'ZX999';
  EXCEPTION WHEN SQLSTATE 'ZX999' THEN
    RETURN lines;
  END;
END $$;
CREATE TEMP TABLE id_runs (path text, i bigint, line text);
INSERT INTO id_runs SELECT 'direct', i, l FROM unnest(id_cases()) WITH ORDINALITY AS u(l, i);
SET ocx.notify_mode = immediate;
INSERT INTO id_runs SELECT 'statement', i, l FROM unnest(id_cases()) WITH ORDINALITY AS u(l, i);
RESET ocx.notify_mode;
SELECT count(*) AS nothing_left FROM ocx.streams WHERE stream_id LIKE 'idc-%';
SELECT i, line FROM id_runs WHERE path = 'direct' ORDER BY i;
-- the statements gave the same, but for the path
SELECT d.i, d.line AS direct, s.line AS statement
  FROM id_runs d JOIN id_runs s ON s.i = d.i AND s.path = 'statement'
 WHERE d.path = 'direct' AND replace(d.line, ', direct', ', not direct') IS DISTINCT FROM s.line;
SELECT path, count(*) FILTER (WHERE line LIKE '%, direct') AS direct,
       count(*) FILTER (WHERE line LIKE '%, not direct') AS not_direct
  FROM id_runs GROUP BY path ORDER BY path;
DROP FUNCTION id_cases();
-- not taken: REPEATABLE READ keeps the statement (its serialization failures)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT ocx.append_event('direct-1', 7, 'Deposited', '{"n": 8}');
SELECT direct_appends();
COMMIT;
-- not taken: immediate wake-ups need the statement trigger
SET ocx.notify_mode = immediate;
SELECT ocx.append_event('direct-1', 8, 'Deposited', '{"n": 9}');
SELECT direct_appends();
RESET ocx.notify_mode;
-- not taken: a trigger ocx does not know on either table
CREATE FUNCTION direct_seen() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE NOTICE 'trigger saw %', TG_TABLE_NAME; RETURN NULL; END$$;
CREATE TRIGGER direct_seen AFTER INSERT ON ocx.events
    FOR EACH STATEMENT EXECUTE FUNCTION direct_seen();
SELECT ocx.append_event('direct-1', 9, 'Deposited', '{"n": 10}');
SELECT direct_appends();
DROP TRIGGER direct_seen ON ocx.events;
CREATE TRIGGER direct_seen AFTER UPDATE ON ocx.streams
    FOR EACH STATEMENT EXECUTE FUNCTION direct_seen();
SELECT ocx.append_event('direct-1', 10, 'Deposited', '{"n": 11}');
SELECT direct_appends();
DROP TRIGGER direct_seen ON ocx.streams;
DROP FUNCTION direct_seen();
-- not taken: the tenant policies as ocx.distribute() rewrites them for Citus
-- (plain expressions, no sub-select); then back as ocx creates them.  One
-- table per transaction: the worker reads both tables of this database.
ALTER POLICY events_tenant ON ocx.events
    USING (COALESCE(tenant_id, '') = COALESCE(current_setting('ocx.tenant', true), ''))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM NULLIF(current_setting('ocx.tenant', true), ''));
ALTER POLICY streams_tenant ON ocx.streams
    USING (COALESCE(tenant_id, '') = COALESCE(current_setting('ocx.tenant', true), ''))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM NULLIF(current_setting('ocx.tenant', true), ''));
SELECT ocx.append_event('direct-1', 11, 'Deposited', '{"n": 12}');
SELECT direct_appends();
ALTER POLICY events_tenant ON ocx.events
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY streams_tenant ON ocx.streams
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
-- taken again
SELECT ocx.append_event('direct-1', 12, 'Deposited', '{"n": 13}');
SELECT direct_appends();

-- tenancy: the row carries the session's tenant; another tenant's stream is OX012
SET ocx.tenant = 'acme';
SELECT ocx.append_event('direct-t', NULL, 'Opened', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-t', 1, 'Deposited', '{}');
SELECT direct_appends();
SET ocx.tenant = 'globex';
SELECT ocx.append_event('direct-t', NULL, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-t', 2, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-t', 0, 'Deposited', '{}');
SELECT direct_appends();
RESET ocx.tenant;
SELECT ocx.append_event('direct-t', NULL, 'Deposited', '{}');
SELECT direct_appends();

-- a tombstone refuses, whatever the expected version
SELECT ocx.append_event('direct-5', 0, 'Opened', '{}');
SELECT direct_appends();
SELECT ocx.delete_stream('direct-5', 1, hard => true);
SELECT ocx.append_event('direct-5', NULL, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-5', 1, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-5', 7, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-5', 0, 'Deposited', '{}');
SELECT direct_appends();
-- session_replication_role = replica: the tombstone trigger fires ALWAYS,
-- the immediate-notify trigger only on origin; the direct path does the same
SET session_replication_role = replica;
SELECT ocx.append_event('direct-5', NULL, 'Deposited', '{}');
SELECT direct_appends();
SELECT ocx.append_event('direct-7', NULL, 'Opened', '{}');
SELECT direct_appends();
SET ocx.notify_mode = immediate;
SELECT ocx.append_event('direct-7', 1, 'Deposited', '{}');
SELECT direct_appends();
RESET ocx.notify_mode;
RESET session_replication_role;


-- both paths wrote the same kind of rows: gap-free versions, the category,
-- the tenant, the log txid, and a hash chain that verifies
SELECT stream_id, stream_version, type, data, metadata, tags, correlation_id IS NOT NULL AS corr,
       tenant_id, txid = lag(txid) OVER w AS same_txid_as_previous
  FROM ocx.events WHERE stream_id LIKE 'direct-%'
WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)
 ORDER BY stream_id, stream_version;
SET ocx.tenant = 'acme';
SELECT stream_id, stream_version, tenant_id FROM ocx.events WHERE stream_id = 'direct-t';
SELECT stream_id, version, category, tenant_id, deleted FROM ocx.streams WHERE stream_id = 'direct-t';
RESET ocx.tenant;
SELECT stream_id, version, category, tenant_id, deleted, head IS NOT NULL AS has_head,
       created_at <= updated_at AS times_ok
  FROM ocx.streams WHERE stream_id LIKE 'direct-%' ORDER BY stream_id;
-- (the hard delete of direct-5 is the one finding, an authorised removal)
SELECT stream, version, problem, authorised FROM ocx.verify() WHERE stream LIKE 'direct-%';
DROP FUNCTION direct_appends();
