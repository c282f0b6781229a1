-- Graphs: ocx.saga_graph and ocx.projection_graph return Graphviz DOT text
-- (docs/reference.md, "Graphs").  Names here start with "gr".
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.settle(id uuid, want text, step integer DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    s ocx.saga_instances;
BEGIN
    FOR n IN 1..400 LOOP
        PERFORM ocx._saga_tick();
        SELECT * INTO s FROM ocx.saga_instances x WHERE x.saga_id = id;
        IF s.state = want AND (step IS NULL OR s.current_step = step) THEN
            RETURN s.state || coalesce(' at step ' || step, '');
        END IF;
        PERFORM pg_sleep(0.025);
    END LOOP;
    RETURN 'timed out in ' || s.state || ' at step ' || s.current_step;
END $$;

-- a command type may hold a double quote: labels escape it
SELECT ocx.define_saga('gr_trip', '{
  "steps": [
    {"name": "hotel", "command": "gr.BookHotel", "success": "gr.HotelBooked", "failure": "gr.HotelFull",
     "timeout": "1 minute", "compensation": {"command": "gr.CancelHotel"}},
    {"name": "flight", "command": "gr.BookFlight", "success": ["gr.FlightBooked", "gr.FlightWaitlisted"],
     "failure": "gr.NoSeats"},
    {"name": "pay", "command": "gr.Pay \"now\"", "success": "gr.Paid", "failure": "gr.PaymentDeclined",
     "compensation": {"command": "gr.Refund"}},
    {"name": "notify", "command": "gr.Notify", "success": "gr.Notified"}
  ]}');

-- the definition: steps, success and failure edges, compensations in reverse
SELECT ocx.saga_graph('gr_trip');

-- errors
SELECT ocx.saga_graph(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.saga_graph('');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.saga_graph('gr_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.saga_graph('00000000-0000-0000-0000-00000000f404');
\echo :LAST_ERROR_SQLSTATE

-- an instance: its progress fills the nodes
SELECT ocx.start_saga('gr_trip', '{"trip": 1}', '00000000-0000-0000-0000-00000000f001');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000f001', 'running', 1);
SELECT ocx.saga_graph('00000000-0000-0000-0000-00000000f001');
SELECT ocx.append('grhotel-1', NULL, '{"type": "gr.HotelBooked", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000f001"}') IS NOT NULL AS appended;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000f001', 'running', 2);
SELECT ocx.append('grflight-1', NULL, '{"type": "gr.NoSeats", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000f001"}') IS NOT NULL AS appended;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000f001', 'compensating', 1);
-- hotel succeeded (green), flight failed (red), the hotel's undo is outstanding (yellow)
SELECT ocx.saga_graph('00000000-0000-0000-0000-00000000f001');
-- the upper-case spelling of the id names the same instance
SELECT ocx.saga_graph(upper('00000000-0000-0000-0000-00000000f001')) =
       ocx.saga_graph('00000000-0000-0000-0000-00000000f001') AS same;

-- projections: categories (and types) read, mode and state, declared tables
CREATE TABLE gr_totals (k text PRIMARY KEY, n int);
CREATE TABLE gr_lines (k text, n int);
CREATE FUNCTION gr_handler(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT ocx.define_projection('gr_orders', 'gr_handler(ocx.event)', types => '{gr.Placed,gr.Paid}',
                             categories => '{grorder}', tables => '{gr_totals,gr_lines}');
SELECT ocx.define_projection('gr_audit', 'gr_handler(ocx.event)', categories => '{grorder,grpay}');
SELECT ocx.define_projection('gr_all', 'gr_handler(ocx.event)', partitions => 2);
SELECT ocx.pause_projection('gr_all');
-- other tests' projections may be defined too: show the lines about ours
SELECT line FROM regexp_split_to_table(ocx.projection_graph(), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE line !~ '"projection:' OR line ~ '"projection:gr_' ORDER BY n;

-- who may call them: readers (with their own rights, not SECURITY DEFINER)
SELECT p.proname, has_function_privilege('ocx_reader', p.oid, 'execute') AS reader,
       has_function_privilege('public', p.oid, 'execute') AS public, p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'ocx'::regnamespace
   AND p.proname IN ('saga_graph', 'projection_graph', '_dot_str') ORDER BY 1;

SELECT ocx.drop_projection('gr_orders');
SELECT ocx.drop_projection('gr_audit');
SELECT ocx.drop_projection('gr_all');
DELETE FROM ocx.saga_instances WHERE saga_id = '00000000-0000-0000-0000-00000000f001';
DELETE FROM ocx.commands WHERE correlation_id = '00000000-0000-0000-0000-00000000f001';
SELECT ocx.drop_saga('gr_trip');
DROP FUNCTION gr_handler(ocx.event);
DROP TABLE gr_totals, gr_lines;
