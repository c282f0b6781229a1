-- A projection's handler runs with the tenant, correlation id, causation id
-- and traceparent of the event it handles: row-level security shows it its
-- tenant's rows, and what it appends continues the event's trace.  The
-- projection is owned by a plain member of ocx_admin (superusers bypass
-- row-level security).
\set SHOW_CONTEXT never

CREATE ROLE ocx_regress_tp_admin NOLOGIN IN ROLE ocx_admin;
CREATE ROLE ocx_regress_tp_writer NOLOGIN IN ROLE ocx_writer;
CREATE TABLE tp_seen (event_type text, tenant text, correlation_id text, causation_is_event boolean,
                      traceparent text, visible_events bigint);
CREATE FUNCTION tp_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Poison' THEN
        RAISE EXCEPTION 'poison in %', e.stream_id;
    END IF;
    INSERT INTO public.tp_seen
    SELECT e.type, current_setting('ocx.tenant'), current_setting('ocx.correlation_id'),
           current_setting('ocx.causation_id') = e.event_id::text, current_setting('ocx.traceparent'),
           (SELECT count(*) FROM ocx.events x WHERE x.stream_id LIKE 'tnp-%');
    -- what it appends continues the event's trace (outside the projection's categories)
    IF e.type = 'AcmeOne' THEN
        PERFORM ocx.append_event('tnpecho-1', NULL, 'Echoed', '{}');
    END IF;
END $$;
ALTER TABLE tp_seen OWNER TO ocx_regress_tp_admin;
ALTER FUNCTION tp_handler(ocx.event) OWNER TO ocx_regress_tp_admin;

CREATE FUNCTION tp_wait(p text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    FOR i IN 1..400 LOOP
        SELECT * INTO s FROM ocx.projection_status WHERE name = p;
        EXIT WHEN s.lag_events = 0 AND s.retry_at IS NULL;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN s.state || ' lag=' || s.lag_events;
END $$;

CREATE TEMP TABLE before AS SELECT name, value FROM ocx.stats WHERE kind = 'counter';

SET ROLE ocx_regress_tp_admin;
SELECT ocx.define_projection('tp_async', 'tp_handler(ocx.event)', categories => '{tnp}',
                             retry => '{"max_attempts": 1}');
RESET ROLE;

SET ROLE ocx_regress_tp_writer;
BEGIN;
SET LOCAL ocx.tenant = 'acme';
SET LOCAL ocx.correlation_id = '7d000000-0000-4000-8000-000000000001';
SET LOCAL ocx.traceparent = '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01';
SELECT ocx.append('tnp-1', 0, '[{"type": "AcmeOne", "data": {}}, {"type": "AcmeTwo", "data": {}}]');
COMMIT;
BEGIN;
SET LOCAL ocx.tenant = 'globex';
SELECT ocx.append('tnp-2', 0, '[{"type": "GlobexOne", "data": {}}, {"type": "Poison", "data": {}}]');
COMMIT;
RESET ROLE;

SELECT tp_wait('tp_async');
SELECT event_type, tenant, correlation_id, causation_is_event, traceparent, visible_events
  FROM tp_seen ORDER BY event_type;
-- the event the handler appended: the handled event's tenant, correlation id and
-- trace, caused by it
SELECT x.stream_id, x.type, x.tenant_id, x.correlation_id, x.causation_id = o.event_id AS caused_by_event,
       x.metadata->>'traceparent' AS traceparent
  FROM ocx.events x, ocx.events o
 WHERE x.stream_id = 'tnpecho-1' AND o.stream_id = 'tnp-1' AND o.type = 'AcmeOne';

-- the poison event's dead letter: its tenant and the admins see it, other tenants do not
SET ROLE ocx_regress_tp_writer;
SET ocx.tenant = 'acme';
SELECT count(*) AS acme_sees FROM ocx.dead_letters WHERE projection = 'tp_async';
SET ocx.tenant = 'globex';
SELECT stream_id, type FROM ocx.dead_letters WHERE projection = 'tp_async';
RESET ocx.tenant;
RESET ROLE;
SET ROLE ocx_regress_tp_admin;
SELECT count(*) AS admin_sees FROM ocx.dead_letters WHERE projection = 'tp_async';
RESET ROLE;

-- the projection counters moved
SELECT s.value - b.value >= 3 AS projection_events_counted
  FROM ocx.stats s JOIN before b USING (name) WHERE s.name = 'projection_events';
-- and lag is reported per projection
SELECT line FROM pg_catalog.regexp_split_to_table(ocx.metrics(), E'\n') AS line
 WHERE line LIKE '%projection="tp_async"%' AND line NOT LIKE 'ocx_projection_events_applied%'
 ORDER BY line;

SELECT ocx.drop_projection('tp_async');
DROP TABLE tp_seen;
DROP FUNCTION tp_handler(ocx.event);
DROP FUNCTION tp_wait(text);
DROP ROLE ocx_regress_tp_admin;
DROP ROLE ocx_regress_tp_writer;
