-- Blue/green rebuilds (rebuild_projection(name, shadow => true)): argument
-- errors and refusals, and that a refused call writes nothing; then one small
-- rebuild end to end.  Streams here are "bg-..." only.
\set SHOW_CONTEXT never
\set VERBOSITY terse

CREATE TABLE bg_totals (stream_id text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
-- an unqualified name: the handler finds the shadow table during a
-- blue/green replay (the shadow schema is first in its search_path)
CREATE FUNCTION bg_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bg_totals AS t VALUES (e.stream_id, (e.data ->> 'n')::bigint)
    ON CONFLICT (stream_id) DO UPDATE SET n = t.n + excluded.n;
END $$;
CREATE FUNCTION bg_wait(p text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    FOR i IN 1..400 LOOP
        SELECT * INTO s FROM ocx.projection_status WHERE name = p;
        EXIT WHEN s.lag_events = 0 AND s.shadow_checkpoint IS NULL AND s.state = 'running';
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN s.state || ' lag=' || s.lag_events || ' shadow=' || (s.shadow_checkpoint IS NOT NULL);
END $$;

-- declared tables: checked at definition
SELECT ocx.define_projection('bg_bad', 'bg_handler(ocx.event)', tables => '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_projection('bg_bad', 'bg_handler(ocx.event)', tables => ARRAY['pg_class'::regclass]);
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW bg_view AS SELECT 1 AS x;
SELECT ocx.define_projection('bg_bad', 'bg_handler(ocx.event)', tables => ARRAY['bg_view'::regclass]);
\echo :LAST_ERROR_SQLSTATE
CREATE SCHEMA bg;
CREATE TABLE bg.bg_totals (k int);
SELECT ocx.define_projection('bg_bad', 'bg_handler(ocx.event)', tables => '{bg.bg_totals, public.bg_totals}');
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA bg CASCADE;
DROP VIEW bg_view;
SELECT count(*) FROM ocx.projections WHERE name = 'bg_bad';

-- a projection without declared tables cannot be rebuilt blue/green
SELECT ocx.define_projection('bg_plain', 'bg_handler(ocx.event)', categories => '{bg}');
SELECT ocx.rebuild_projection('bg_plain', shadow => true);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.rebuild_projection('bg_plain', shadow => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.rebuild_projection('bg_nope', shadow => true);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.drop_projection('bg_plain');

-- by position and by name, old calls keep working; tables by name
SELECT ocx.define_projection('bg', 'bg_handler(ocx.event)', NULL, '{bg}', 'async', NULL, NULL);
SELECT ocx.define_projection('bg', 'bg_handler(ocx.event)', categories => '{bg}', tables => '{bg_totals}');
SELECT tables FROM ocx.projections WHERE name = 'bg';

-- a dependent view, a foreign key, a trigger: refused, nothing written
CREATE VIEW bg_totals_view AS SELECT * FROM bg_totals;
SELECT ocx.rebuild_projection('bg', shadow => true);
\echo :LAST_ERROR_SQLSTATE
DROP VIEW bg_totals_view;
CREATE TABLE bg_child (stream_id text REFERENCES bg_totals);
SELECT ocx.rebuild_projection('bg', shadow => true);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE bg_child;
CREATE FUNCTION bg_trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER bg_t BEFORE INSERT ON bg_totals FOR EACH ROW EXECUTE FUNCTION bg_trig();
SELECT ocx.rebuild_projection('bg', shadow => true);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER bg_t ON bg_totals;
SELECT shadow_schema, rebuild_started_at FROM ocx.projections WHERE name = 'bg';
SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%';
-- an existing schema of the shadow's name is not taken over
SELECT ocx._projection_shadow_schema('bg') AS shadow \gset
CREATE SCHEMA :"shadow";
SELECT ocx.rebuild_projection('bg', shadow => true);
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA :"shadow";

-- end to end: events, a live model, a grant, a blue/green rebuild
SELECT ocx.append('bg-1', NULL, '[{"type": "Add", "data": {"n": 1}}, {"type": "Add", "data": {"n": 2}}]');
SELECT ocx.append('bg-2', NULL, '{"type": "Add", "data": {"n": 10}}');
SELECT bg_wait('bg');
SELECT * FROM bg_totals ORDER BY stream_id;
CREATE ROLE bg_reader;
GRANT SELECT ON bg_totals TO bg_reader;
COMMENT ON TABLE bg_totals IS 'totals per stream';
UPDATE bg_totals SET n = -1;   -- the live model drifts; the rebuild restores it
SELECT 'bg_totals'::regclass::oid AS old_oid \gset
SELECT ocx.rebuild_projection('bg', shadow => true);
SELECT bg_wait('bg');
SELECT * FROM bg_totals ORDER BY stream_id;
SELECT 'bg_totals'::regclass::oid <> :old_oid AS new_table,
       has_table_privilege('bg_reader', 'bg_totals', 'SELECT') AS reader_select,
       has_table_privilege('bg_reader', 'bg_totals', 'INSERT') AS reader_insert,
       obj_description('bg_totals'::regclass, 'pg_class') AS comment;
SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%';
SELECT s.state, s.lag_events, s.rebuild_done, s.rebuild_total, p.rebuild_finished_at IS NOT NULL AS finished,
       s.events_applied, p.shadow_failures
  FROM ocx.projection_status s JOIN ocx.projections p USING (name) WHERE name = 'bg';
-- and it goes on applying
SELECT ocx.append('bg-2', NULL, '{"type": "Add", "data": {"n": 5}}');
SELECT bg_wait('bg');
SELECT * FROM bg_totals ORDER BY stream_id;

-- a handler that names its live table would write it during the replay:
-- refused (OX233), the rebuild abandoned after the retry policy's attempts,
-- the live table untouched
CREATE FUNCTION bg_qualified(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bg_totals AS t VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = t.n + 1;
END $$;
SELECT ocx.define_projection('bg', 'bg_qualified(ocx.event)', categories => '{bg}', tables => '{bg_totals}',
                             retry => '{"max_attempts": 1}');
SELECT ocx.rebuild_projection('bg', shadow => true);
SELECT bg_wait('bg');
SELECT last_error FROM ocx.projections WHERE name = 'bg';
SELECT * FROM bg_totals ORDER BY stream_id;
-- qualified with ocx.projection_schema (set during the replay only): swapped
CREATE OR REPLACE FUNCTION bg_qualified(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I.bg_totals AS t VALUES ($1, 1) '
                   'ON CONFLICT (stream_id) DO UPDATE SET n = t.n + 1',
                   COALESCE(NULLIF(current_setting('ocx.projection_schema'), ''), 'public'))
    USING e.stream_id;
END $$;
SELECT ocx.rebuild_projection('bg', shadow => true);
SELECT bg_wait('bg');
SELECT * FROM bg_totals ORDER BY stream_id;
SELECT current_setting('ocx.projection_schema') AS outside_a_handler;

-- a paused projection is not rebuilt blue/green; drop_projection drops a
-- shadow under way (paused: the worker leaves it alone)
SELECT ocx.pause_projection('bg');
SELECT ocx.rebuild_projection('bg', shadow => true);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.resume_projection('bg');
BEGIN;
SELECT ocx.rebuild_projection('bg', shadow => true);
SELECT ocx.pause_projection('bg');
COMMIT;
SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%';
SELECT ocx.drop_projection('bg');
SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%';

-- a projection owned by a role that is no superuser: the DDL runs as that
-- role, the table keeps its owner and grants
CREATE ROLE bg_admin IN ROLE ocx_admin;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO bg_admin', current_database()); END $$;
GRANT CREATE ON SCHEMA public TO bg_admin;
CREATE TABLE bg_owned (stream_id text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
ALTER TABLE bg_owned OWNER TO bg_admin;
GRANT SELECT ON bg_owned TO bg_reader;
CREATE FUNCTION bg_owned_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bg_owned AS t VALUES (e.stream_id, (e.data ->> 'n')::bigint)
    ON CONFLICT (stream_id) DO UPDATE SET n = t.n + excluded.n;
END $$;
ALTER FUNCTION bg_owned_handler(ocx.event) OWNER TO bg_admin;
SET ROLE bg_admin;
SELECT ocx.define_projection('bg_owned', 'bg_owned_handler(ocx.event)', categories => '{bg}',
                             tables => '{bg_owned}');
SELECT bg_wait('bg_owned');
UPDATE bg_owned SET n = 0;
SELECT ocx.rebuild_projection('bg_owned', shadow => true);
SELECT bg_wait('bg_owned');
RESET ROLE;
SELECT * FROM bg_owned ORDER BY stream_id;
SELECT pg_get_userbyid(relowner) AS owner, has_table_privilege('bg_reader', 'bg_owned', 'SELECT') AS reader_select,
       (SELECT last_error FROM ocx.projections WHERE name = 'bg_owned') AS last_error
  FROM pg_class WHERE oid = 'bg_owned'::regclass;
-- a role that may not create the shadow schema is refused up front
DO $$ BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM bg_admin', current_database()); END $$;
SET ROLE bg_admin;
SELECT ocx.rebuild_projection('bg_owned', shadow => true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT ocx.drop_projection('bg_owned');
DROP TABLE bg_owned;
DROP FUNCTION bg_owned_handler(ocx.event);
REVOKE CREATE ON SCHEMA public FROM bg_admin;
DROP ROLE bg_admin;

-- a partitioned projection: a shadow checkpoint per partition, all swapped
-- in together; the number of partitions cannot change meanwhile; an in-place
-- rebuild or a drop forgets the shadow partitions
CREATE TABLE bg_ptotals (stream_id text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE FUNCTION bg_phandler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bg_ptotals AS t VALUES (e.stream_id, (e.data ->> 'n')::bigint)
    ON CONFLICT (stream_id) DO UPDATE SET n = t.n + excluded.n;
END $$;
SELECT ocx.define_projection('bg_parts', 'bg_phandler(ocx.event)', categories => '{bg}',
                             tables => '{bg_ptotals}', partitions => 3);
SELECT ocx.append('bg-' || i, NULL, jsonb_build_object('type', 'Add', 'data', jsonb_build_object('n', i)))
  FROM generate_series(3, 8) i;
SELECT bg_wait('bg_parts');
SELECT * FROM bg_ptotals ORDER BY stream_id;
UPDATE bg_ptotals SET n = -1;   -- the live model drifts; the rebuild restores it
BEGIN;
SELECT ocx.rebuild_projection('bg_parts', shadow => true);
SELECT string_agg(partition || ':' || checkpoint_position || ':' || rebuild_done, ',' ORDER BY partition)
  FROM ocx.projection_shadow_partitions WHERE projection = 'bg_parts';
SELECT shadow_checkpoint_txid IS NULL AS no_single_shadow_checkpoint FROM ocx.projections WHERE name = 'bg_parts';
SELECT shadow_checkpoint, rebuild_done, partitions
  FROM ocx.projection_status WHERE name = 'bg_parts';
SAVEPOINT s;
SELECT ocx.define_projection('bg_parts', 'bg_phandler(ocx.event)', categories => '{bg}',
                             tables => '{bg_ptotals}', partitions => 2);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT ocx.rebuild_projection('bg_parts');
SELECT count(*) AS shadow_partitions_after_in_place FROM ocx.projection_shadow_partitions;
ROLLBACK;
SELECT ocx.rebuild_projection('bg_parts', shadow => true);
SELECT bg_wait('bg_parts');
SELECT * FROM bg_ptotals ORDER BY stream_id;
SELECT s.state, s.lag_events, s.events_applied, s.rebuild_done, s.partitions,
       (SELECT count(*) FROM ocx.projection_shadow_partitions) AS shadow_partitions,
       (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%') AS shadow_schemas
  FROM ocx.projection_status s WHERE name = 'bg_parts';
SELECT ocx.append('bg-3', NULL, '{"type": "Add", "data": {"n": 100}}');
SELECT bg_wait('bg_parts');
SELECT * FROM bg_ptotals WHERE stream_id = 'bg-3';
BEGIN;
SELECT ocx.rebuild_projection('bg_parts', shadow => true);
SELECT ocx.pause_projection('bg_parts');
COMMIT;
SELECT ocx.drop_projection('bg_parts');
SELECT count(*) AS shadow_partitions, (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ocx\_shadow\_%') AS shadow_schemas
  FROM ocx.projection_shadow_partitions;
DROP TABLE bg_ptotals;
DROP FUNCTION bg_phandler(ocx.event);

DROP TABLE bg_totals;
DROP ROLE bg_reader;
DROP FUNCTION bg_handler(ocx.event), bg_qualified(ocx.event), bg_wait(text), bg_trig();
