-- Sagas: definitions and their errors, start/abort errors, and the state
-- machine driven by hand (client-claimed commands, events appended here).
-- The worker runs too; settle() runs the saga task until the saga reaches
-- the wanted state, so the output does not depend on who got there first.
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

-- the transitions of a saga, without times
CREATE FUNCTION pg_temp.timeline(id uuid) RETURNS TABLE (step integer, step_name text, action text,
                                                         state text, event_type text, detail text)
    LANGUAGE sql AS $$
    SELECT s.step, s.step_name, s.action, s.state, s.event_type, s.detail
      FROM ocx.saga_steps s WHERE s.saga_id = $1 ORDER BY s.id $$;

-- claim the one outstanding command of a saga (client-handled types)
CREATE FUNCTION pg_temp.claim(types text[]) RETURNS TABLE (type text, data jsonb, correlation_id uuid)
    LANGUAGE sql AS $$
    SELECT c.type, c.data, c.correlation_id FROM ocx.claim_commands(types, 10, '1 hour', 'sagat') c $$;

-- definitions: errors name what is wrong
SELECT ocx.define_saga('sagat_bad', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [], "retry": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": []}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"description": "no steps"}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "retries": 3}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"command": "C", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "1st", "command": "C", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": []}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S"},
                                                {"name": "a", "command": "D", "success": "T"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "failure": 7}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "failure": ["S"]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "timeout": "soon"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "timeout": "-1 second"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "timeout": 30}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "data": [1]}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "data": {"x": "$.order.id"}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "data": {"x": "$.input.["}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "data": {"x": ["$.steps.b.id"]}},
                                                {"name": "b", "command": "D", "success": "T"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "compensation": "Undo"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "compensation": {"data": {}}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('sagat_bad', '{"steps": [{"name": "a", "command": "C", "success": "S", "compensation": {"command": "U", "timeout": "1s"}}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga(NULL, '{"steps": [{"name": "a", "command": "C", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.define_saga('', '{"steps": [{"name": "a", "command": "C", "success": "S"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS no_bad_definition FROM ocx.saga_definitions WHERE name = 'sagat_bad';

-- a valid definition is stored normalized; compensations may use their own step's result
SELECT ocx.define_saga('sagat_trip', '{
  "description": "book a trip",
  "steps": [
    {"name": "hotel", "command": "sagat.BookHotel", "data": {"trip": "$.input.trip", "nights": "$.input.nights"},
     "success": "sagat.HotelBooked", "failure": ["sagat.HotelFull"],
     "compensation": {"command": "sagat.CancelHotel", "data": {"booking": "$.steps.hotel.booking"}}},
    {"name": "flight", "command": "sagat.BookFlight",
     "data": {"trip": "$.input.trip", "hotel": "$.steps.hotel.booking", "note": "$$.literal", "saga": "$.saga_id"},
     "success": ["sagat.FlightBooked"], "failure": "sagat.NoSeats", "timeout": "1 hour",
     "compensation": {"command": "sagat.CancelFlight"}},
    {"name": "pay", "command": "sagat.Pay", "success": "sagat.Paid", "failure": "sagat.Declined"}
  ]}');
SELECT jsonb_pretty(steps) FROM ocx.saga_definitions WHERE name = 'sagat_trip';
-- redefining replaces it
SELECT ocx.define_saga('sagat_one', '{"steps": [{"name": "a", "command": "sagat.A", "success": "sagat.ADone"}]}');
SELECT ocx.define_saga('sagat_one', '{"steps": [{"name": "b", "command": "sagat.B", "success": "sagat.BDone"}]}');
SELECT steps->0->>'name' AS redefined FROM ocx.saga_definitions WHERE name = 'sagat_one';

-- start: errors
SELECT ocx.start_saga('sagat_nope', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.start_saga('sagat_trip', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.start_saga('sagat_trip', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.start_saga(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE

-- 1. a saga to completion: each step's command is sent with the saga id as
-- correlation id and its data filled from the input and earlier results
SELECT ocx.start_saga('sagat_trip', '{"trip": "T1", "nights": 2}', '00000000-0000-0000-0000-00000000a001');
-- a retry with the same id and input is a no-op; other input is refused
SELECT ocx.start_saga('sagat_trip', '{"trip": "T1", "nights": 2}', '00000000-0000-0000-0000-00000000a001');
SELECT ocx.start_saga('sagat_trip', '{"trip": "T9"}', '00000000-0000-0000-0000-00000000a001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS one_hotel_command FROM ocx.commands WHERE correlation_id = '00000000-0000-0000-0000-00000000a001';
SELECT saga_name, state, current_step, step_name, steps, command_status, deadline IS NULL AS no_deadline
  FROM ocx.saga_status WHERE saga_id = '00000000-0000-0000-0000-00000000a001';
SELECT * FROM pg_temp.claim('{sagat.BookHotel}');
-- an event of another type, or of another correlation, does not move the saga
SELECT ocx.append('sagat_hotel-1', NULL, '{"type": "sagat.HotelBooked", "data": {"booking": "H0"}}');
SELECT ocx.append('sagat_hotel-1', NULL, '{"type": "sagat.Unrelated", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000a001"}');
SELECT ocx.append('sagat_hotel-1', NULL, '{"type": "sagat.HotelBooked", "data": {"booking": "H1"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a001"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a001', 'running', 2);
SELECT * FROM pg_temp.claim('{sagat.BookFlight}');
SELECT deadline > now() + '59 minutes' AS deadline_set FROM ocx.saga_status
 WHERE saga_id = '00000000-0000-0000-0000-00000000a001';
SELECT ocx.append('sagat_flight-1', NULL, '{"type": "sagat.FlightBooked", "data": {"seat": "2A"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a001"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a001', 'running', 3);
-- without "data" the command carries the saga's input
SELECT * FROM pg_temp.claim('{sagat.Pay}');
SELECT ocx.append('sagat_pay-1', NULL, '{"type": "sagat.Paid", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000a001"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a001', 'completed');
SELECT * FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a001');
SELECT s.state, s.current_step, i.results FROM ocx.saga_status s JOIN ocx.saga_instances i USING (saga_id)
 WHERE saga_id = '00000000-0000-0000-0000-00000000a001';
-- late events change nothing
SELECT ocx.append('sagat_pay-1', NULL, '{"type": "sagat.Declined", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000a001"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a001', 'completed');
SELECT count(*) AS transitions FROM ocx.saga_steps WHERE saga_id = '00000000-0000-0000-0000-00000000a001';
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a001');
\echo :LAST_ERROR_SQLSTATE

-- 2. a failure event at the last step: compensations of the completed steps
-- in reverse order, each sent once and only after the previous one finished
SELECT ocx.start_saga('sagat_trip', '{"trip": "T2", "nights": 1}', '00000000-0000-0000-0000-00000000a002');
SELECT count(*) FROM pg_temp.claim('{sagat.BookHotel}');
SELECT ocx.append('sagat_hotel-2', NULL, '{"type": "sagat.HotelBooked", "data": {"booking": "H2"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a002"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a002', 'running', 2);
SELECT count(*) FROM pg_temp.claim('{sagat.BookFlight}');
SELECT ocx.append('sagat_flight-2', NULL, '{"type": "sagat.FlightBooked", "data": {"seat": "3C"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a002"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a002', 'running', 3);
SELECT count(*) FROM pg_temp.claim('{sagat.Pay}');
SELECT ocx.append('sagat_pay-2', NULL, '{"type": "sagat.Declined", "data": {"reason": "card"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a002"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a002', 'compensating', 2);
SELECT state, step_name, command_status, error FROM ocx.saga_status
 WHERE saga_id = '00000000-0000-0000-0000-00000000a002';
-- only the flight's compensation is out; without "data" it carries the input
SELECT c.command_id AS undo_flight, c.type, c.data, c.claim_token AS undo_flight_token FROM ocx.claim_commands('{sagat.CancelFlight,sagat.CancelHotel}', 10) c \gset
SELECT :'type' AS type, :'data' AS data;
SELECT ocx.complete_command(:'undo_flight', NULL, :'undo_flight_token');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a002', 'compensating', 1);
SELECT c.command_id AS undo_hotel, c.type, c.data, c.claim_token AS undo_hotel_token FROM ocx.claim_commands('{sagat.CancelFlight,sagat.CancelHotel}', 10) c \gset
SELECT :'type' AS type, :'data' AS data;
SELECT ocx.complete_command(:'undo_hotel', NULL, :'undo_hotel_token');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a002', 'compensated');
SELECT * FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a002');
SELECT type, count(*) FROM ocx.commands WHERE correlation_id = '00000000-0000-0000-0000-00000000a002'
 GROUP BY type ORDER BY min(seq);

-- 3. a failure at the first step compensates nothing
SELECT ocx.start_saga('sagat_trip', '{"trip": "T3"}', '00000000-0000-0000-0000-00000000a003');
SELECT ocx.complete_command(c.command_id, NULL, c.claim_token) FROM ocx.claim_commands('{sagat.BookHotel}', 10) c;
SELECT ocx.append('sagat_hotel-3', NULL, '{"type": "sagat.HotelFull", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000a003"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a003', 'compensated');
SELECT action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a003');

-- 4. a step command that is dead-lettered fails the step
SELECT ocx.start_saga('sagat_trip', '{"trip": "T4"}', '00000000-0000-0000-0000-00000000a004');
SELECT ocx.fail_command(c.command_id, 'no such hotel', retry => false, claim_token => c.claim_token)
  FROM ocx.claim_commands('{sagat.BookHotel}', 10) c;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a004', 'compensated');
SELECT action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a004');

-- 5. a compensation that fails after its retries fails the saga
SELECT ocx.start_saga('sagat_trip', '{"trip": "T5"}', '00000000-0000-0000-0000-00000000a005');
SELECT count(*) FROM pg_temp.claim('{sagat.BookHotel}');
SELECT ocx.append('sagat_hotel-5', NULL, '{"type": "sagat.HotelBooked", "data": {"booking": "H5"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a005"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a005', 'running', 2);
SELECT count(*) FROM pg_temp.claim('{sagat.BookFlight}');
SELECT ocx.append('sagat_flight-5', NULL, '{"type": "sagat.NoSeats", "data": {},
                  "correlation_id": "00000000-0000-0000-0000-00000000a005"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a005', 'compensating', 1);
SELECT ocx.fail_command(c.command_id, 'hotel system down', retry => false, claim_token => c.claim_token)
  FROM ocx.claim_commands('{sagat.CancelHotel}', 10) c;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a005', 'failed');
SELECT state, current_step, error FROM ocx.saga_status WHERE saga_id = '00000000-0000-0000-0000-00000000a005';
SELECT action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a005');

-- 6. a timeout: a step command still waiting in the queue is cancelled
SELECT ocx.start_saga('sagat_trip', '{"trip": "T6"}', '00000000-0000-0000-0000-00000000a006');
SELECT count(*) FROM pg_temp.claim('{sagat.BookHotel}');
SELECT ocx.append('sagat_hotel-6', NULL, '{"type": "sagat.HotelBooked", "data": {"booking": "H6"},
                  "correlation_id": "00000000-0000-0000-0000-00000000a006"}');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a006', 'running', 2);
UPDATE ocx.saga_instances SET deadline = now() - interval '1 second'
 WHERE saga_id = '00000000-0000-0000-0000-00000000a006';
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a006', 'compensating', 1);
SELECT status, last_error FROM ocx.command_status
 WHERE correlation_id = '00000000-0000-0000-0000-00000000a006' AND type = 'sagat.BookFlight';
SELECT ocx.complete_command(c.command_id, NULL, c.claim_token) FROM ocx.claim_commands('{sagat.CancelHotel}', 10) c;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a006', 'compensated');
SELECT step_name, action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a006');

-- 7. abort on request: a step whose command already ran is compensated too
SELECT ocx.start_saga('sagat_trip', '{"trip": "T7"}', '00000000-0000-0000-0000-00000000a007');
SELECT ocx.complete_command(c.command_id, NULL, c.claim_token) FROM ocx.claim_commands('{sagat.BookHotel}', 10) c;
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a007', 'customer cancelled');
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a007');
SELECT state, step_name, error FROM ocx.saga_status WHERE saga_id = '00000000-0000-0000-0000-00000000a007';
SELECT ocx.complete_command(c.command_id, NULL, c.claim_token) FROM ocx.claim_commands('{sagat.CancelHotel}', 10) c;
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a007', 'compensated');
SELECT step_name, action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a007');
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a007');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.abort_saga('00000000-0000-0000-0000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.abort_saga(NULL);
\echo :LAST_ERROR_SQLSTATE

-- 8. a transition that raises an error fails its saga, and only its saga
SELECT ocx.define_saga('sagat_poison', '{"steps": [
    {"name": "a", "command": "sagat.PA", "success": "sagat.PADone"},
    {"name": "b", "command": "sagat.PB", "data": {"n": "$.input.n + 1"}, "success": "sagat.PBDone"}]}');
SELECT ocx.start_saga('sagat_poison', '{"n": "x"}', '00000000-0000-0000-0000-00000000a009');
SELECT ocx.start_saga('sagat_poison', '{"n": 41}', '00000000-0000-0000-0000-00000000a010');
SELECT ocx.append('sagat_poison-1', NULL, '[{"type": "sagat.PADone", "data": {}, "correlation_id": "00000000-0000-0000-0000-00000000a009"},
                                            {"type": "sagat.PADone", "data": {}, "correlation_id": "00000000-0000-0000-0000-00000000a010"}]');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a009', 'failed');
SELECT pg_temp.settle('00000000-0000-0000-0000-00000000a010', 'running', 2);
SELECT state, step_name, error FROM ocx.saga_status WHERE saga_name = 'sagat_poison' ORDER BY saga_id;
SELECT data FROM ocx.commands WHERE type = 'sagat.PB';
SELECT action, state, detail FROM pg_temp.timeline('00000000-0000-0000-0000-00000000a009');
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a010');

-- dropping: not while a saga runs; unknown names are errors
SELECT ocx.start_saga('sagat_one', '{}', '00000000-0000-0000-0000-00000000a008');
SELECT ocx.drop_saga('sagat_one');
\echo :LAST_ERROR_SQLSTATE
SELECT ocx.abort_saga('00000000-0000-0000-0000-00000000a008');
SELECT ocx.drop_saga('sagat_one');
SELECT ocx.drop_saga('sagat_one');
\echo :LAST_ERROR_SQLSTATE

-- the template filler on its own
SELECT ocx._saga_render('{"a": "$.input.x", "b": ["$.steps.s.y", 1, "$$x", "plain"], "c": "$.input.missing"}',
                        '{"input": {"x": 1}, "steps": {"s": {"y": {"z": true}}}}');
