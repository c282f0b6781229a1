-- read_all / read_category from a time (after_time): events whose time is
-- >= after_time, in log order, found through the time map the worker keeps
-- (src/reads.c).  Event times here are given by the caller and lie in 2100,
-- after every other event of the regression database, and they are not
-- monotonic in log order: the check is always against a full read filtered
-- by time, and the start the map gives must skip the rest of the log.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- map everything below the horizon now (the worker does the same each pass)
CREATE FUNCTION pg_temp.map_caught_up() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    goal ocx.cursor := ocx.last_append_cursor();
BEGIN
    FOR i IN 1 .. 400 LOOP
        PERFORM ocx._time_map_tick();
        IF (SELECT ocx.cursor(s.txid, s.global_position) FROM ocx.time_map_state s) OPERATOR(ocx.>) goal THEN
            RETURN true;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;

-- the result of read_all from t equals the full read filtered by time
CREATE FUNCTION pg_temp.same_as_scan(t timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT pg_catalog.format('%s: %s events, same as the scan: %s', t,
           (SELECT count(*) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => t)),
           (SELECT array_agg(global_position) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => t))
           IS NOT DISTINCT FROM
           (SELECT array_agg(global_position) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime']) WHERE time >= t))
$$;

-- log order: 12:00, 10:00, 11:00 (the first event written has the latest time)
SELECT ocx.append('rdtime-1', 0, '[
  {"type": "rdt.Item", "time": "2100-01-01T12:00:00Z", "data": {"qty": 1}},
  {"type": "rdt.Note", "time": "2100-01-01T10:00:00Z", "data": {}},
  {"type": "rdt.Item", "time": "2100-01-01T11:00:00Z", "data": {"qty": 3}}
]');
SELECT pg_temp.map_caught_up();
SELECT pg_temp.same_as_scan(t) FROM unnest(ARRAY[
    '2100-01-01 09:00+00', '2100-01-01 10:00+00', '2100-01-01 10:00:01+00', '2100-01-01 10:30+00',
    '2100-01-01 11:00+00', '2100-01-01 11:59:59+00', '2100-01-01 12:00+00', '2100-01-01 12:00:01+00',
    '2100-01-01 13:00+00']::timestamptz[]) t;
SELECT stream_version, type, time FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => '2100-01-01 10:30+00');

-- the start skips the rest of the log: it is just before the first event
-- (in log order) whose time is >= after_time's minute
SELECT ocx._read_start(NULL, '2100-01-01 10:30+00') OPERATOR(ocx.=)
       (SELECT ocx.cursor(txid, global_position - 1) FROM ocx.events
         WHERE stream_id = 'rdtime-1' AND stream_version = 1) AS start_before_first_late_event;
SELECT ocx._read_start(NULL, '2100-01-01 10:30+00') OPERATOR(ocx.>)
       (SELECT ocx.cursor(txid, global_position) FROM ocx.events WHERE stream_id <> 'rdtime-1'
           AND time < '2100-01-01' ORDER BY txid DESC, global_position DESC LIMIT 1) AS start_after_the_rest_of_the_log;
SELECT count(*) > 100 AS the_rest_of_the_log_is_there FROM ocx.events WHERE time < '2100-01-01';
-- no event that late: the start is where the map ends (nothing to read)
SELECT ocx._read_start(NULL, '2200-01-01') OPERATOR(ocx.=)
       (SELECT ocx.cursor(txid, global_position) FROM ocx.time_map_state) AS start_at_map_end;
-- a later cursor wins; NULL after_time is the cursor itself
SELECT ocx._read_start('999999999/1', '2100-01-01 10:30+00')::text = '999999999/1' AS later_cursor_wins;
SELECT ocx._read_start('5/7', NULL)::text = '5/7' AS no_time_no_change, ocx._read_start(NULL, NULL) IS NULL AS both_null;

-- a second transaction: earlier and later times than the first (the map's
-- existing buckets are lowered, new ones added)
SELECT ocx.append('rdtime-2', 0, '[
  {"type": "rdt.Note", "time": "2100-01-01T09:30:00Z", "data": {}},
  {"type": "rdt.Item", "time": "2100-01-01T13:00:00Z", "data": {"qty": 5}},
  {"type": "rdt.Note", "time": "2100-01-01T11:00:30Z", "data": {}}
]');
SELECT ocx.append_event('rdtime-1', 3, 'rdt.Note', '{}');
SELECT pg_temp.map_caught_up();
SELECT pg_temp.same_as_scan(t) FROM unnest(ARRAY[
    '2100-01-01 09:00+00', '2100-01-01 09:30+00', '2100-01-01 10:00+00', '2100-01-01 11:00+00',
    '2100-01-01 11:00:30+00', '2100-01-01 11:01+00', '2100-01-01 12:00+00', '2100-01-01 13:00+00',
    '2100-01-01 13:00:01+00']::timestamptz[]) t;
-- the last append's time is now (2026), before every 2100 event: from now on
-- means all of the 2100 events and it
SELECT count(*) AS from_before_the_append
  FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => now() - interval '1 minute');

-- paging: pass the last cursor and keep after_time
SELECT string_agg(stream_id || '/' || stream_version, ' ' ORDER BY txid, global_position) AS page1
  FROM ocx.read_all(NULL, 2, NULL, ARRAY['rdtime'], after_time => '2100-01-01 11:00+00');
SELECT string_agg(stream_id || '/' || stream_version, ' ' ORDER BY txid, global_position) AS page2
  FROM ocx.read_all((SELECT cursor FROM ocx.read_all(NULL, 2, NULL, ARRAY['rdtime'], after_time => '2100-01-01 11:00+00')
                      ORDER BY txid DESC, global_position DESC LIMIT 1),
                    2, NULL, ARRAY['rdtime'], after_time => '2100-01-01 11:00+00');

-- infinities
SELECT count(*) AS from_minus_infinity FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => '-infinity');
SELECT count(*) AS from_infinity FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtime'], after_time => 'infinity');

-- the map: one row per minute with events, values never decrease
SELECT count(*) > 0 AS has_rows,
       bool_and(ok) AS monotonic
  FROM (SELECT ocx.cursor(txid, global_position) OPERATOR(ocx.>=) lag(ocx.cursor(txid, global_position)) OVER (ORDER BY bucket)
               OR lag(txid) OVER (ORDER BY bucket) IS NULL AS ok
          FROM ocx.time_map) m;

-- read_category takes after_time, upcasting on both
SELECT ocx.define_event_type('rdt.Item', 2);
SELECT ocx.define_upcaster('rdt.Item', 1, spec => '{"op": "rename", "from": "qty", "to": "n"}');
SELECT stream_id, stream_version, schema_version, data
  FROM ocx.read_category('rdtime', NULL, NULL, after_time => '2100-01-01 11:00+00') WHERE type = 'rdt.Item';
SELECT stream_id, stream_version, schema_version, data
  FROM ocx.read_all(NULL, NULL, ARRAY['rdt.Item'], ARRAY['rdtime'], after_time => '2100-01-01 12:00+00');
SELECT schema_version, data
  FROM ocx.read_all(NULL, NULL, ARRAY['rdt.Item'], ARRAY['rdtime'], upcast => false, after_time => '2100-01-01 12:00+00');

-- tenancy and least privilege: members of ocx_reader of each tenant
CREATE ROLE ocx_regress_rdt_writer NOLOGIN IN ROLE ocx_writer;
CREATE ROLE ocx_regress_rdt_reader NOLOGIN IN ROLE ocx_reader;
SET ROLE ocx_regress_rdt_writer;
SET ocx.tenant = 'acme';
SELECT ocx.append('rdtimet-1', 0, '[
  {"type": "rdt.Item", "schema_version": 1, "time": "2100-01-02T10:00:00Z", "data": {"qty": 7}},
  {"type": "rdt.Note", "time": "2100-01-02T09:00:00Z", "data": {}}
]');
SET ocx.tenant = 'globex';
SELECT ocx.append('rdtimet-2', 0, '{"type": "rdt.Note", "time": "2100-01-02T10:00:00Z", "data": {}}');
RESET ROLE;
RESET ocx.tenant;
SELECT pg_temp.map_caught_up();
SET ROLE ocx_regress_rdt_reader;
SET ocx.tenant = 'acme';
SELECT stream_id, stream_version, type, schema_version, data, tenant_id
  FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtimet'], after_time => '2100-01-02 09:30+00');
SELECT stream_id, stream_version, tenant_id
  FROM ocx.read_category('rdtimet', after_time => '2100-01-02 08:00+00');
SET ocx.tenant = 'globex';
SELECT stream_id, stream_version, tenant_id
  FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rdtimet'], after_time => '2100-01-02 08:00+00');
SET ocx.tenant = 'initech';
SELECT count(*) AS initech_sees FROM ocx.read_category('rdtimet', after_time => '2100-01-02 08:00+00');
-- the map's upkeep is not the reader's
SELECT ocx._time_map_tick();
\echo :LAST_ERROR_SQLSTATE
-- nor the map itself: it has no tenant (it would show when others wrote)
SELECT count(*) FROM ocx.time_map;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ocx.time_map_state;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET ocx.tenant;

-- the database worker keeps the map by itself (no tick called here)
CREATE FUNCTION pg_temp.worker_mapped(goal ocx.cursor) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        IF (SELECT ocx.cursor(s.txid, s.global_position) FROM ocx.time_map_state s) OPERATOR(ocx.>) goal THEN
            RETURN true;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;
SELECT ocx.append('rdtime-3', 0, '{"type": "rdt.Note", "time": "2100-01-03T10:00:00Z", "data": {}}');
SELECT pg_temp.worker_mapped(ocx.last_append_cursor());
SELECT ocx._read_start(NULL, '2100-01-03 10:00+00') OPERATOR(ocx.=)
       (SELECT ocx.cursor(txid, global_position - 1) FROM ocx.events WHERE stream_id = 'rdtime-3')
       AS start_just_before_it;

DELETE FROM ocx.event_types WHERE type = 'rdt.Item';
DROP ROLE ocx_regress_rdt_writer;
DROP ROLE ocx_regress_rdt_reader;
