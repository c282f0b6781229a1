-- `make soak`: the domain the soak runs (test/soak/run.sh).  Accounts
-- (acct-N) get Deposited/Withdrawn events from pgbench writers and from the
-- server-handled command soak.Deposit; an async and an inline projection keep
-- a balance per stream; subscription "soak" (2 partitions) is consumed by two
-- client loops that record every delivered global_position; soak.Notify
-- commands are claimed by a client loop; saga soak_order has two command
-- steps (reserve, charge) and compensates reserve when charge fails.
-- On purpose: every Poison event is a dead letter of the async projection.
\set ON_ERROR_STOP 1
CREATE EXTENSION ocx;
CREATE SCHEMA soak;

CREATE TABLE soak.balance_async  (stream_id text PRIMARY KEY, balance bigint NOT NULL, n bigint NOT NULL);
CREATE TABLE soak.balance_inline (stream_id text PRIMARY KEY, balance bigint NOT NULL, n bigint NOT NULL);
-- what the subscription's consumers were given (no key: duplicates must show)
CREATE TABLE soak.delivered (consumer text NOT NULL, global_position bigint NOT NULL);
CREATE TABLE soak.control (stop boolean NOT NULL);
INSERT INTO soak.control VALUES (false);

CREATE FUNCTION soak.delta(e ocx.event) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE e.type WHEN 'Deposited' THEN 1 WHEN 'Withdrawn' THEN -1 ELSE 0 END
           * (e.data->>'amount')::bigint $$;

CREATE FUNCTION soak.apply_async(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Poison' THEN
        RAISE EXCEPTION 'soak poison event % (on purpose)', e.global_position;
    END IF;
    INSERT INTO soak.balance_async AS b VALUES (e.stream_id, soak.delta(e), 1)
    ON CONFLICT (stream_id) DO UPDATE SET balance = b.balance + excluded.balance, n = b.n + 1;
END $$;
CREATE FUNCTION soak.apply_inline(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO soak.balance_inline AS b VALUES (e.stream_id, soak.delta(e), 1)
    ON CONFLICT (stream_id) DO UPDATE SET balance = b.balance + excluded.balance, n = b.n + 1;
END $$;

SELECT ocx.define_projection('soak_async', 'soak.apply_async(ocx.event)',
                             types => '{Deposited,Withdrawn,Poison}', categories => '{acct}',
                             retry => '{"max_attempts": 2, "base_delay": "10 milliseconds", "max_delay": "50 milliseconds"}');
SELECT ocx.define_projection('soak_inline', 'soak.apply_inline(ocx.event)',
                             types => '{Deposited,Withdrawn}', categories => '{acct}', mode => 'inline');

SELECT ocx.create_subscription('soak', partitions => 2);

-- server-handled commands
CREATE FUNCTION soak.deposit(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event(c.data->>'stream', NULL, 'Deposited', jsonb_build_object('amount', (c.data->>'amount')::bigint));
    RETURN jsonb_build_object('ok', true);
END $$;
CREATE FUNCTION soak.reserve(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event('order-' || c.correlation_id, NULL, 'Reserved', c.data);
    RETURN NULL;
END $$;
CREATE FUNCTION soak.release(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event('order-' || c.correlation_id, NULL, 'Released', c.data);
    RETURN NULL;
END $$;
CREATE FUNCTION soak.charge(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (c.data->>'amount')::int % 5 = 0 THEN
        PERFORM ocx.append_event('order-' || c.correlation_id, NULL, 'ChargeFailed', c.data);
    ELSE
        PERFORM ocx.append_event('order-' || c.correlation_id, NULL, 'Charged', c.data);
    END IF;
    RETURN NULL;
END $$;
SELECT ocx.define_command_handler('soak.Deposit', 'soak.deposit(ocx.command)');
SELECT ocx.define_command_handler('soak.Reserve', 'soak.reserve(ocx.command)');
SELECT ocx.define_command_handler('soak.Release', 'soak.release(ocx.command)');
SELECT ocx.define_command_handler('soak.Charge', 'soak.charge(ocx.command)');
-- handled by clients (soak.claimer)
SELECT ocx.define_command_handler('soak.Notify', NULL);

SELECT ocx.define_saga('soak_order', $json${
  "steps": [
    {"name": "reserve", "command": "soak.Reserve", "success": "Reserved",
     "compensation": {"command": "soak.Release"}},
    {"name": "charge", "command": "soak.Charge", "success": "Charged", "failure": "ChargeFailed"}
  ]}$json$);

-- A subscription consumer: poll, record, ack the last cursor, commit; until
-- told to stop and a poll comes back empty.
CREATE PROCEDURE soak.consume(me text) LANGUAGE plpgsql AS $$
DECLARE
    e ocx.event;
    last ocx.cursor;
    n integer;
BEGIN
    LOOP
        n := 0;
        FOR e IN SELECT * FROM ocx.poll('soak', 500, consumer => me) LOOP
            INSERT INTO soak.delivered VALUES (me, e.global_position);
            last := e.cursor;
            n := n + 1;
        END LOOP;
        IF n > 0 THEN
            PERFORM ocx.ack('soak', last, consumer => me);
        END IF;
        COMMIT;
        IF n = 0 THEN
            EXIT WHEN (SELECT stop FROM soak.control);
            PERFORM pg_sleep(0.05);
        END IF;
    END LOOP;
END $$;

-- A command claimer: the work (an event) and complete_command in one transaction.
CREATE PROCEDURE soak.claimer(me text) LANGUAGE plpgsql AS $$
DECLARE
    c ocx.command;
    n integer;
BEGIN
    LOOP
        n := 0;
        FOR c IN SELECT * FROM ocx.claim_commands(ARRAY['soak.Notify'], 20, '30 seconds', me) LOOP
            PERFORM set_config('ocx.correlation_id', c.correlation_id::text, true);
            PERFORM set_config('ocx.causation_id', c.command_id::text, true);
            PERFORM ocx.append_event('note-' || (c.data->>'n'), NULL, 'Notified', c.data);
            PERFORM ocx.complete_command(c.command_id, jsonb_build_object('by', me), claim_token => c.claim_token);
            n := n + 1;
        END LOOP;
        COMMIT;
        IF n = 0 THEN
            EXIT WHEN (SELECT stop FROM soak.control);
            PERFORM pg_sleep(0.05);
        END IF;
    END LOOP;
END $$;
