-- ---------------------------------------------------------------------------
-- The message bus: wake-ups on LISTEN/NOTIFY, ephemeral messages, durable
-- subscriptions with consumer groups, and the command queue.  See docs/bus.md.
--
-- NOTIFY is a wake-up hint, never the data: the worker sends it (batched)
-- after events become readable in gap-free log order, so an append never
-- takes the cluster-wide notify lock and never fails because a listener is
-- stuck.  Durable state lives in the tables below.
-- ---------------------------------------------------------------------------

-- What the worker has already announced (one row).
CREATE TABLE ocx.bus_state (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    events_txid         xid8 NOT NULL DEFAULT '0',
    events_position     bigint NOT NULL DEFAULT 0,
    commands_txid       xid8 NOT NULL DEFAULT '0',
    commands_seq        bigint NOT NULL DEFAULT 0,
    notified_at         timestamptz
);
INSERT INTO ocx.bus_state DEFAULT VALUES;
COMMENT ON TABLE ocx.bus_state IS
    'the bus worker''s progress: the last event and command cursors it sent NOTIFY wake-ups for';
REVOKE ALL ON ocx.bus_state FROM PUBLIC;

-- Ephemeral messages.
CREATE FUNCTION ocx.publish(channel text, payload jsonb) RETURNS void
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_publish';
COMMENT ON FUNCTION ocx.publish(text, jsonb) IS
    'NOTIFY channel with a JSON payload at commit; payloads over 7900 bytes raise OX310, names starting with ocx_ are reserved (OX311)';

-- Immediate wake-ups (ocx.notify_mode = immediate): the appending
-- transaction itself sends the NOTIFY.  The WHEN clause keeps the trigger
-- from being queued at all in the default mode.
CREATE FUNCTION ocx._notify_immediate() RETURNS trigger
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_notify_immediate';
COMMENT ON FUNCTION ocx._notify_immediate() IS
    'internal trigger: NOTIFY from the appending transaction when ocx.notify_mode = immediate';
CREATE TRIGGER events_notify_immediate AFTER INSERT ON ocx.events
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('ocx.notify_mode', true) = 'immediate')
    EXECUTE FUNCTION ocx._notify_immediate();

-- The worker's tasks, callable for tests and for deployments without the worker.
CREATE FUNCTION ocx._bus_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_bus_tick';
COMMENT ON FUNCTION ocx._bus_tick() IS
    'internal: one round of the worker''s bus task (NOTIFY wake-ups); true when more is pending';
REVOKE ALL ON FUNCTION ocx._bus_tick() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Durable subscriptions.
--
-- The PL/pgSQL functions below pin search_path to pg_catalog, pg_temp, so
-- their plain operators resolve to pg_catalog's; tables are schema-qualified.
-- ---------------------------------------------------------------------------

-- A subscription's name follows the one name rule (docs/reference.md,
-- "Vocabulary"), checked by define_subscription (ocx._check_name, OX500)
-- before it writes; no CHECK restates it here: a name a 0.2.0 install
-- accepted (up to 200 characters) stays usable and survives a dump and
-- restore into a fresh install.
CREATE TABLE ocx.subscriptions (
    name        text PRIMARY KEY,
    types       text[],
    categories  text[],
    partitions  integer NOT NULL DEFAULT 1,
    lease       interval NOT NULL DEFAULT '30 seconds',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    on_poison   text NOT NULL DEFAULT 'as_stored',
    CONSTRAINT subscriptions_on_poison_check CHECK (on_poison IN ('as_stored', 'stop')),
    CONSTRAINT subscriptions_partitions_check CHECK (partitions BETWEEN 1 AND 1024),
    CONSTRAINT subscriptions_lease_check CHECK (lease > '0'::interval)
);
COMMENT ON TABLE ocx.subscriptions IS
    'durable subscriptions: filters, number of partitions (consumer groups) and the lease of a partition';

CREATE TABLE ocx.subscription_partitions (
    subscription        text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    partition           integer NOT NULL,
    acked_txid          xid8 NOT NULL DEFAULT '0',
    acked_position      bigint NOT NULL DEFAULT 0,
    delivered_txid      xid8,
    delivered_position  bigint,
    owner               text,
    lease_until         timestamptz,
    acked_at            timestamptz,
    PRIMARY KEY (subscription, partition)
);
COMMENT ON TABLE ocx.subscription_partitions IS
    'one row per partition of a subscription: the acknowledged cursor, what was delivered after it, and which consumer holds it';

CREATE TABLE ocx.subscription_consumers (
    subscription    text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    consumer        text NOT NULL,
    last_seen       timestamptz NOT NULL,
    PRIMARY KEY (subscription, consumer)
);
COMMENT ON TABLE ocx.subscription_consumers IS
    'consumers that polled a subscription; those seen within its lease share its partitions';

SELECT pg_catalog.pg_extension_config_dump('ocx.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.subscription_partitions', '');
REVOKE ALL ON ocx.subscriptions, ocx.subscription_partitions, ocx.subscription_consumers FROM PUBLIC;
COMMENT ON COLUMN ocx.subscriptions.on_poison IS
    'what poll does with an event whose upcaster fails (OX121): as_stored hands it over as stored, marked, and records it in ocx.subscription_dead_letters; stop fails the poll';

-- Poison events of subscriptions (issue 11, item 3): one row per event a
-- subscription could not upcast, recorded by poll.
CREATE TABLE ocx.subscription_dead_letters (
    subscription    text NOT NULL REFERENCES ocx.subscriptions ON DELETE CASCADE,
    global_position bigint NOT NULL,
    txid            xid8 NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    type            text NOT NULL,
    schema_version  integer NOT NULL,
    sqlstate        text NOT NULL,
    error           text NOT NULL,
    tenant_id       text,
    failed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (subscription, global_position)
);
COMMENT ON TABLE ocx.subscription_dead_letters IS
    'events a subscription''s poll could not upcast (on_poison = as_stored: they were handed over as stored, marked with metadata.ocx_poison)';
SELECT pg_catalog.pg_extension_config_dump('ocx.subscription_dead_letters', '');
REVOKE ALL ON ocx.subscription_dead_letters FROM PUBLIC;
ALTER TABLE ocx.subscription_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.subscription_dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY subscription_dead_letters_tenant ON ocx.subscription_dead_letters FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
COMMENT ON POLICY subscription_dead_letters_tenant ON ocx.subscription_dead_letters IS
    'a session sees the poison events of its ocx.tenant only';

-- An event upcast to its type's current version (OX121 when an upcaster fails).
CREATE FUNCTION ocx._upcast_event(e ocx.event) RETURNS ocx.event
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    e.data := ocx._upcast(e.type, e.schema_version, e.data);
    e.schema_version := ocx._upcast_version(e.type, e.schema_version);
    RETURN e;
END
$$;
COMMENT ON FUNCTION ocx._upcast_event(ocx.event) IS
    'internal: the event upcast to its type''s current schema version';

-- The partition of a stream: every event of a stream lands in one partition,
-- so one consumer sees a stream's events in order.
CREATE FUNCTION ocx.stream_partition(stream_id text, partitions integer) RETURNS integer
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_stream_partition';
COMMENT ON FUNCTION ocx.stream_partition(text, integer) IS
    'the partition (0 .. partitions - 1) of a subscription that a stream''s events belong to; partitions must be 1 .. 1024 (else OX010)';

CREATE FUNCTION ocx._bus_name_arg(what text, val text) RETURNS text
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_bus_name_arg';
COMMENT ON FUNCTION ocx._bus_name_arg(text, text) IS
    'internal: a valid subscription or consumer name (1 to 200 bytes), else raises OX301';

-- ocx.define_subscription (and the deprecated create_subscription): sql/parts/70_vocabulary.sql

CREATE FUNCTION ocx.drop_subscription(name text, if_exists boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    DELETE FROM ocx.subscriptions s WHERE s.name = drop_subscription.name;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Pass if_exists => true to ignore a missing subscription.';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ocx.drop_subscription(text, boolean) IS
    'drop a subscription and its cursors; returns false when it did not exist and if_exists is true';

-- Poll: events after the acknowledged cursor of every partition this
-- consumer holds, in gap-free log order.  Polls of one subscription are
-- serialized by the lock on its row, which makes partition hand-over safe: a
-- partition changes hands only when everything delivered from it is
-- acknowledged, or when its holder's lease ran out.
CREATE FUNCTION ocx.poll(name text, max_count integer DEFAULT 100, consumer text DEFAULT 'default')
    RETURNS SETOF ocx.event
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub     ocx.subscriptions;
    live    text[];
    nlive   integer;
    me      integer;
    evs     ocx.event[];
    tail    ocx.cursor;
    horizon xid8;
    lo_txid xid8;
    lo_pos  bigint;
    end_txid xid8;
    end_pos bigint;
    ev      ocx.event;
    msg     text;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF max_count IS NULL OR max_count < 0 OR max_count > 100000 THEN
        RAISE EXCEPTION 'max_count must be between 0 and 100000'
            USING ERRCODE = 'OX301', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = poll.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.define_subscription.';
    END IF;

    -- forget consumers gone for long (their partitions were taken over long ago)
    DELETE FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name AND c.last_seen < now() - sub.lease * 10;
    INSERT INTO ocx.subscription_consumers AS c (subscription, consumer, last_seen)
        VALUES (sub.name, poll.consumer, now())
        ON CONFLICT ON CONSTRAINT subscription_consumers_pkey DO UPDATE SET last_seen = excluded.last_seen;
    SELECT array_agg(c.consumer ORDER BY c.consumer) INTO live
      FROM ocx.subscription_consumers c
     WHERE c.subscription = sub.name
       AND c.last_seen > now() - sub.lease;
    nlive := cardinality(live);
    me := array_position(live, poll.consumer) - 1;

    -- give back partitions that now belong to another consumer, once acknowledged
    UPDATE ocx.subscription_partitions p SET owner = NULL, lease_until = NULL, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name AND p.owner = poll.consumer
       AND p.partition % nlive <> me
       AND (p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));
    -- take this consumer's share when it is free, its holder's lease ran out,
    -- or its holder has nothing in flight
    UPDATE ocx.subscription_partitions p SET owner = poll.consumer, delivered_txid = NULL,
           delivered_position = NULL
     WHERE p.subscription = sub.name
       AND p.partition % nlive = me
       AND p.owner IS DISTINCT FROM poll.consumer
       AND (p.owner IS NULL OR p.lease_until < now()
            OR p.delivered_txid IS NULL
            OR (p.delivered_txid, p.delivered_position) <= (p.acked_txid, p.acked_position));

    -- one horizon for the whole poll (every transaction below it has ended,
    -- so the log there is complete): the read and the move past what it
    -- filters out must agree
    horizon := ocx.log_horizon();
    SELECT q.acked_txid, q.acked_position INTO lo_txid, lo_pos FROM ocx.subscription_partitions q
     WHERE q.subscription = sub.name AND q.owner = poll.consumer
     ORDER BY q.acked_txid, q.acked_position LIMIT 1;

    -- the events as stored, through the one reader (filters first: an event
    -- filtered out is never upcast), after the lowest acknowledged cursor
    SELECT array_agg(x ORDER BY (x).txid, (x).global_position) INTO evs FROM (
        SELECT e.*
          FROM ocx._read_log(ocx.cursor(lo_txid, lo_pos), NULL, sub.types, sub.categories, false, horizon) e
          JOIN ocx.subscription_partitions p
            ON p.subscription = sub.name
           AND p.owner = poll.consumer
           AND p.partition = ocx.stream_partition(e.stream_id, sub.partitions)
         WHERE (e.txid, e.global_position) > (p.acked_txid, p.acked_position)
         ORDER BY e.txid, e.global_position
         LIMIT max_count) x;

    -- upcast like every read; a poison event (its upcaster fails, OX121)
    -- fails the poll (on_poison = stop) or is handed over as stored, marked
    -- in metadata.ocx_poison, and recorded as the subscription's dead letter
    IF evs IS NOT NULL THEN
        BEGIN
            SELECT array_agg(ocx._upcast_event(evs[i]) ORDER BY i) INTO evs
              FROM pg_catalog.generate_subscripts(evs, 1) i;
        EXCEPTION WHEN SQLSTATE 'OX121' THEN
            IF sub.on_poison = 'stop' THEN
                RAISE;
            END IF;
            FOR i IN 1 .. cardinality(evs) LOOP
                BEGIN
                    evs[i] := ocx._upcast_event(evs[i]);
                EXCEPTION WHEN SQLSTATE 'OX121' THEN
                    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
                    ev := evs[i];
                    INSERT INTO ocx.subscription_dead_letters AS d
                        (subscription, global_position, txid, stream_id, stream_version, event_id,
                         type, schema_version, sqlstate, error, tenant_id)
                        VALUES (sub.name, ev.global_position, ev.txid, ev.stream_id, ev.stream_version,
                                ev.event_id, ev.type, ev.schema_version, 'OX121', msg, ev.tenant_id)
                        ON CONFLICT ON CONSTRAINT subscription_dead_letters_pkey DO NOTHING;
                    ev.metadata := ev.metadata || jsonb_build_object('ocx_poison',
                        jsonb_build_object('sqlstate', 'OX121', 'error', msg));
                    evs[i] := ev;
                END;
            END LOOP;
        END;
    END IF;

    -- nothing for this consumer up to the horizon: the scan went through
    -- the whole log below it, so its partitions move to the last event there
    -- and the next poll starts after it (a subscription never rescans the
    -- history it filters out; nothing is in flight to ack)
    IF evs IS NULL AND max_count > 0 AND lo_txid IS NOT NULL THEN
        SELECT ocx.txid(t), ocx.global_position(t) INTO end_txid, end_pos
          FROM ocx._log_tail(ocx.cursor(lo_txid, lo_pos), horizon) t;
    END IF;

    IF evs IS NOT NULL THEN
        tail := (evs[cardinality(evs)])."cursor";
    END IF;
    -- what is in flight now: everything up to the last event handed out (a
    -- poll of 0 events only renews the lease)
    UPDATE ocx.subscription_partitions p
       SET lease_until = now() + sub.lease,
           (delivered_txid, delivered_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(tail, ocx.cursor(p.acked_txid, p.acked_position)) AS g
                     WHERE tail IS NOT NULL) s)
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count > 0;
    UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = poll.consumer AND max_count = 0;
    IF end_txid IS NOT NULL THEN
        UPDATE ocx.subscription_partitions p SET acked_txid = end_txid, acked_position = end_pos
         WHERE p.subscription = sub.name AND p.owner = poll.consumer
           AND (p.acked_txid, p.acked_position) < (end_txid, end_pos);
    END IF;

    IF evs IS NOT NULL THEN
        RETURN QUERY SELECT * FROM unnest(evs);
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.poll(text, integer, text) IS
    'up to max_count events after the acknowledged cursor, in gap-free log order, upcast (a poison event as stored, marked, per on_poison), from the partitions this consumer holds; an empty poll moves their cursor to the last event below its horizon, so the next poll scans only what is new';

CREATE FUNCTION ocx.ack(name text, "cursor" ocx.cursor, consumer text DEFAULT 'default') RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub ocx.subscriptions;
BEGIN
    PERFORM ocx._bus_name_arg('subscription name', name);
    PERFORM ocx._bus_name_arg('consumer name', consumer);
    IF "cursor" IS NULL THEN
        RAISE EXCEPTION 'cursor must not be null'
            USING ERRCODE = 'OX301', HINT = 'Acknowledge the "cursor" of the last event you processed.';
    END IF;
    SELECT * INTO sub FROM ocx.subscriptions s
     WHERE s.name = ack.name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.define_subscription.';
    END IF;
    -- fenced: the lease is the consumer's until lease_until, renewed by each
    -- poll and ack.  Once it ran out, another consumer may have taken some of
    -- its partitions (and will get their events again), so an ack from it
    -- -- typically in the same transaction as the work it acknowledges --
    -- is refused as a whole, even for partitions nobody took yet.
    IF EXISTS (SELECT 1 FROM ocx.subscription_partitions p
                WHERE p.subscription = sub.name AND p.owner = ack.consumer
                  AND p.delivered_txid IS NOT NULL AND p.lease_until < now()) THEN
        RAISE EXCEPTION 'consumer "%" lost its lease on subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = format('Its lease of %s ran out before this ack; another consumer may have taken its partitions.', sub.lease),
                  HINT = 'Nothing was acknowledged. Poll again: unacknowledged events are delivered again.';
    END IF;
    -- never past what was delivered: acknowledging unseen events would skip them
    UPDATE ocx.subscription_partitions p
       SET (acked_txid, acked_position) =
               (SELECT ocx.txid(g), ocx.global_position(g) FROM (
                    SELECT greatest(ocx.cursor(p.acked_txid, p.acked_position),
                                    least(ack."cursor",
                                          ocx.cursor(p.delivered_txid, p.delivered_position))) AS g) s),
           acked_at = now(),
           lease_until = now() + sub.lease
     WHERE p.subscription = sub.name AND p.owner = ack.consumer
       AND p.delivered_txid IS NOT NULL;
    IF NOT FOUND THEN
        -- nothing in flight (its last poll was empty): nothing to
        -- acknowledge, the lease is renewed
        UPDATE ocx.subscription_partitions p SET lease_until = now() + sub.lease
         WHERE p.subscription = sub.name AND p.owner = ack.consumer;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" holds no polled partition of subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = 'Its lease ran out and another consumer took its partitions, or it has not polled.',
                  HINT = 'Poll again: unacknowledged events are delivered again.';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.ack(text, ocx.cursor, text) IS
    'acknowledge every event up to cursor that this consumer was given by poll (after an empty poll: nothing, the lease is renewed); refused (OX303, nothing written) once its lease ran out or when it holds no partition';

CREATE VIEW ocx.subscription_status WITH (security_invoker = true) AS
    SELECT s.name, p.partition, s.partitions, s.types, s.categories, p.owner, p.lease_until,
           ocx.cursor(p.acked_txid, p.acked_position) AS acked,
           p.acked_at,
           CASE WHEN p.delivered_txid IS NULL THEN NULL
                ELSE ocx.cursor(p.delivered_txid, p.delivered_position) END AS delivered
      FROM ocx.subscriptions s
      JOIN ocx.subscription_partitions p ON p.subscription = s.name;
COMMENT ON VIEW ocx.subscription_status IS
    'each partition of each subscription: who holds it, the acknowledged and the delivered cursor';

-- ---------------------------------------------------------------------------
-- Commands: a durable queue with one handler per command type.
-- ---------------------------------------------------------------------------

CREATE TYPE ocx.command AS (
    command_id      uuid,
    type            text,
    data            jsonb,
    metadata        jsonb,
    correlation_id  uuid,
    causation_id    uuid,
    attempt         integer,
    claim_token     uuid
);
COMMENT ON TYPE ocx.command IS
    'a command as handlers receive it and claim_commands returns it; claim_token names the claim (NULL for in-server handlers)';

CREATE TABLE ocx.command_handlers (
    command_type    text PRIMARY KEY,
    handler         regprocedure,
    handler_role    regrole NOT NULL DEFAULT current_user::regrole,
    max_attempts    integer NOT NULL DEFAULT 5,
    base_delay      interval NOT NULL DEFAULT '1 second',
    max_delay       interval NOT NULL DEFAULT '5 minutes',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT command_handlers_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000)
);
COMMENT ON TABLE ocx.command_handlers IS
    'the one handler of each command type: a function the worker runs, or NULL when clients claim the commands';

CREATE TABLE ocx.commands (
    command_id      uuid PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    type            text NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    run_after       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    claimed_by      text,
    claimed_until   timestamptz,
    result          jsonb,
    last_error      text,
    txid            xid8 NOT NULL DEFAULT ocx.log_txid(),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at     timestamptz,
    claim_token     uuid,
    tenant_id       text,
    CONSTRAINT commands_status_check
        CHECK (status IN ('pending', 'running', 'succeeded', 'dead_letter'))
);
-- the claim: pending commands of one type, or of several, in queue order;
-- expired claims
CREATE INDEX commands_pending_idx ON ocx.commands (type, seq) WHERE status = 'pending';
CREATE INDEX commands_pending_seq_idx ON ocx.commands (seq) WHERE status = 'pending';
CREATE INDEX commands_running_idx ON ocx.commands (claimed_until) WHERE status = 'running';
CREATE INDEX commands_log_order_idx ON ocx.commands (txid, seq);
COMMENT ON TABLE ocx.commands IS 'the command queue: every command, its status, attempts and result';
COMMENT ON COLUMN ocx.commands.tenant_id IS
    'the ocx.tenant of the session that sent the command (a saga''s step commands: the saga''s tenant)';

CREATE TABLE ocx.command_history (
    command_id  uuid NOT NULL REFERENCES ocx.commands ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event       text NOT NULL,
    attempt     integer NOT NULL,
    actor       text,
    detail      text
);
CREATE INDEX command_history_command_idx ON ocx.command_history (command_id, at);
COMMENT ON TABLE ocx.command_history IS
    'what happened to each command: sent, claimed, succeeded, failed, retried, dead_letter';

-- Multi-tenancy: a command belongs to the tenant that sent it (its data,
-- result and errors are that tenant's); its history follows it.  Claims,
-- completions and retries run as ocx_owner under these policies with the
-- caller's ocx.tenant, so a tenant claims and finishes its own commands
-- only.  The worker's command and saga tasks are not subject to them (they
-- serve every tenant; a handler runs with its command's tenant).
ALTER TABLE ocx.commands ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.commands FORCE ROW LEVEL SECURITY;
ALTER TABLE ocx.command_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE ocx.command_history FORCE ROW LEVEL SECURITY;
CREATE POLICY commands_tenant ON ocx.commands FOR ALL
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')))
    WITH CHECK (tenant_id IS NOT DISTINCT FROM
                (SELECT NULLIF(pg_catalog.current_setting('ocx.tenant', true), '')));
CREATE POLICY command_history_tenant ON ocx.command_history FOR ALL
    USING (EXISTS (SELECT FROM ocx.commands c
                    WHERE c.command_id OPERATOR(pg_catalog.=) command_history.command_id))
    WITH CHECK (EXISTS (SELECT FROM ocx.commands c
                         WHERE c.command_id OPERATOR(pg_catalog.=) command_history.command_id));
COMMENT ON POLICY commands_tenant ON ocx.commands IS
    'a session sees, sends, claims and finishes the commands of its ocx.tenant only';
COMMENT ON POLICY command_history_tenant ON ocx.command_history IS
    'a command''s history is visible when the command is';

SELECT pg_catalog.pg_extension_config_dump('ocx.command_handlers', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.commands', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.command_history', '');
REVOKE ALL ON ocx.command_handlers, ocx.commands, ocx.command_history FROM PUBLIC;

CREATE FUNCTION ocx._command_sent() RETURNS void
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_command_sent';
COMMENT ON FUNCTION ocx._command_sent() IS
    'internal: wake the worker at commit (and NOTIFY ocx_commands now when ocx.notify_mode = immediate)';

CREATE FUNCTION ocx._define_command_handler(command_type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    policy      jsonb;
    nargs       integer;
    argtype     oid;
    rettype     oid;
BEGIN
    IF command_type IS NULL OR command_type = '' OR octet_length(command_type) > 256 THEN
        RAISE EXCEPTION 'command type must be a non-empty string of at most 256 bytes'
            USING ERRCODE = 'OX322';
    END IF;
    PERFORM ocx._check_name('command type', command_type);
    IF handler IS NOT NULL THEN
        SELECT pronargs, proargtypes[0], prorettype INTO nargs, argtype, rettype
          FROM pg_catalog.pg_proc WHERE oid = handler;
        IF nargs <> 1 OR argtype <> 'ocx.command'::regtype
           OR rettype NOT IN ('jsonb'::regtype, 'void'::regtype) THEN
            RAISE EXCEPTION 'command handler % has the wrong signature', handler
                USING ERRCODE = 'OX322',
                      DETAIL = 'A command handler takes one ocx.command and returns jsonb (the result) or void.',
                      HINT = 'CREATE FUNCTION my_handler(c ocx.command) RETURNS jsonb ...';
        END IF;
        IF NOT has_function_privilege(ocx._caller(), handler, 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for command handler %', handler
                USING ERRCODE = '42501', DETAIL = 'It will run as you, the role that defines it.';
        END IF;
    END IF;
    -- the one policy shape and its checks (sql/parts/40_projections.sql)
    policy := ocx._retry_policy(retry, '{"max_attempts": 5, "base_delay": "00:00:01", "max_delay": "00:05:00"}',
                                'OX322');
    INSERT INTO ocx.command_handlers AS h (command_type, handler, max_attempts, base_delay, max_delay,
                                           handler_role)
        VALUES (_define_command_handler.command_type, _define_command_handler.handler,
                (policy ->> 'max_attempts')::integer, (policy ->> 'base_delay')::interval,
                (policy ->> 'max_delay')::interval, ocx._caller())
        ON CONFLICT ON CONSTRAINT command_handlers_pkey DO UPDATE
           SET handler = excluded.handler, max_attempts = excluded.max_attempts,
               base_delay = excluded.base_delay, max_delay = excluded.max_delay,
               handler_role = excluded.handler_role;
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx._define_command_handler(text, regprocedure, jsonb) IS
    'internal: the body of ocx.define_command_handler, run as ocx_owner; records the caller (ocx._caller()) as the handler''s role';

-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_command_handler(type text, handler regprocedure,
                                           retry jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_command_handler(text, regprocedure, jsonb) IS
    'define (or replace) the one handler of a command type: a function (ocx.command) -> jsonb|void the worker runs, or NULL for client-claimed commands; retry {"max_attempts", "base_delay", "max_delay"}';

CREATE FUNCTION ocx.drop_command_handler(type text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM ocx.command_handlers h WHERE h.command_type = drop_command_handler.type;
    IF NOT FOUND AND NOT coalesce(if_exists, false) THEN
        RAISE EXCEPTION 'command type "%" has no handler', type USING ERRCODE = 'OX320',
            HINT = 'Pass if_exists => true to ignore a missing handler.';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.drop_command_handler(text, boolean) IS
    'remove the handler of a command type (if_exists: no error when there is none)';

-- The queue's one way in.  The command belongs to tenant_id, given
-- explicitly: send_command passes the sender's ocx.tenant (it runs as
-- ocx_owner, so row-level security also checks it), the saga task the
-- saga's tenant (the worker, a superuser, is not subject to the policy).
CREATE FUNCTION ocx._enqueue_command(type text, data jsonb, correlation_id uuid, causation_id uuid,
                                     command_id uuid, metadata jsonb, run_at timestamptz, tenant_id text)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id      uuid := coalesce(_enqueue_command.command_id, gen_random_uuid());
    corr    uuid := _enqueue_command.correlation_id;
    cause   uuid := _enqueue_command.causation_id;
    old     ocx.commands;
BEGIN
    IF type IS NULL OR type = '' OR octet_length(type) > 256 THEN
        RAISE EXCEPTION 'command type must be a non-empty string of at most 256 bytes'
            USING ERRCODE = 'OX322';
    END IF;
    IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
        RAISE EXCEPTION 'command data must be a JSON object'
            USING ERRCODE = 'OX322', HINT = 'Pass ''{}'' for a command without data.';
    END IF;
    IF metadata IS NULL OR jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'command metadata must be a JSON object' USING ERRCODE = 'OX322';
    END IF;
    -- the same bound as an event's: data plus metadata within ocx.max_event_size
    IF pg_catalog.pg_column_size(data) + pg_catalog.pg_column_size(metadata)
       > pg_catalog.pg_size_bytes(pg_catalog.current_setting('ocx.max_event_size')) THEN
        RAISE EXCEPTION 'command is too large'
            USING ERRCODE = 'OX322',
                  DETAIL = format('Its data and metadata take %s bytes; ocx.max_event_size is %s bytes.',
                                  pg_catalog.pg_column_size(data) + pg_catalog.pg_column_size(metadata),
                                  pg_catalog.pg_size_bytes(pg_catalog.current_setting('ocx.max_event_size'))),
                  HINT = 'Store large payloads elsewhere and put a reference in the command.';
    END IF;
    IF NOT pg_catalog.isfinite(run_at) THEN
        RAISE EXCEPTION 'command run_at must be a finite timestamp'
            USING ERRCODE = 'OX322',
                  DETAIL = format('Got %s.', run_at),
                  HINT = 'Pass NULL to run it now, or a point in time.';
    END IF;
    IF corr IS NULL THEN
        corr := nullif(current_setting('ocx.correlation_id', true), '')::uuid;
    END IF;
    IF cause IS NULL THEN
        cause := nullif(current_setting('ocx.causation_id', true), '')::uuid;
    END IF;
    -- the trace continues through the command (and its handler, see commands.c)
    IF NOT metadata ? 'traceparent' AND coalesce(current_setting('ocx.traceparent', true), '') <> '' THEN
        metadata := metadata || jsonb_build_object('traceparent', current_setting('ocx.traceparent', true));
    END IF;
    INSERT INTO ocx.commands AS c (command_id, type, data, metadata, correlation_id, causation_id, run_after,
                                   tenant_id)
        VALUES (id, _enqueue_command.type, _enqueue_command.data, _enqueue_command.metadata, coalesce(corr, id), cause,
                coalesce(run_at, now()), _enqueue_command.tenant_id)
        ON CONFLICT ON CONSTRAINT commands_pkey DO NOTHING;
    IF NOT FOUND THEN
        -- an idempotent retry repeats the command exactly, in the same tenant
        SELECT * INTO old FROM ocx.commands c WHERE c.command_id = id;
        IF NOT FOUND OR old.tenant_id IS DISTINCT FROM _enqueue_command.tenant_id THEN
            RAISE EXCEPTION 'command id % is already used by another command', id
                USING ERRCODE = 'OX322',
                      DETAIL = 'It belongs to another tenant.',
                      HINT = 'A new command needs a new id.';
        END IF;
        IF old.type = _enqueue_command.type AND old.data = _enqueue_command.data THEN
            RETURN id;
        END IF;
        RAISE EXCEPTION 'command id % is already used by another command', id
            USING ERRCODE = 'OX322',
                  DETAIL = format('It is a "%s" command with different data.', old.type),
                  HINT = 'A retry must repeat the original command exactly; a new command needs a new id.';
    END IF;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        VALUES (id, 'sent', 0, pg_catalog.pg_get_userbyid(ocx._caller()));
    PERFORM ocx._command_sent();
    RETURN id;
END
$$;
COMMENT ON FUNCTION ocx._enqueue_command(text, jsonb, uuid, uuid, uuid, jsonb, timestamptz, text) IS
    'internal: the body of send_command and of the saga task''s sends: put a command of tenant_id in the queue (under row-level security tenant_id must be the session''s ocx.tenant)';

CREATE FUNCTION ocx.send_command(type text, data jsonb, correlation_id uuid DEFAULT NULL,
                                 causation_id uuid DEFAULT NULL, command_id uuid DEFAULT NULL,
                                 metadata jsonb DEFAULT '{}', run_at timestamptz DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the command belongs to the sender's tenant
    RETURN ocx._enqueue_command(send_command.type, send_command.data, send_command.correlation_id,
                                send_command.causation_id, send_command.command_id, send_command.metadata,
                                send_command.run_at, NULLIF(current_setting('ocx.tenant', true), ''));
END
$$;
COMMENT ON FUNCTION ocx.send_command(text, jsonb, uuid, uuid, uuid, jsonb, timestamptz) IS
    'put a command of the session''s ocx.tenant in the durable queue; returns its id (given ids make retries idempotent); correlation defaults to ocx.correlation_id, else the command id';

-- The claim both clients and the worker use: expired claims first (they come
-- back, or become dead letters when their attempts are used up), then pending
-- commands oldest first.  Each step is an index scan with SKIP LOCKED, so
-- competing claimers never wait for each other.
CREATE FUNCTION ocx._claim_commands(types text[], max_count integer, visibility_timeout interval,
                                    claimer text)
    RETURNS SETOF ocx.command
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids     uuid[];
    more    uuid[];
BEGIN
    IF types IS NULL OR cardinality(types) = 0 THEN
        RETURN;
    END IF;
    -- (COLLATE "default": parameters may carry the caller's collation, and
    -- only the column's own collation lets the planner use the indexes)

    -- expired claims are rare: look for them with a cheap index probe first
    IF EXISTS (SELECT 1 FROM ocx.commands c WHERE c.status = 'running' AND c.claimed_until < now()) THEN
        WITH dead AS (
            UPDATE ocx.commands c SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
                   updated_at = now(), finished_at = now(),
                   last_error = coalesce(c.last_error, 'the claim expired')
              FROM (SELECT c2.command_id FROM ocx.commands c2
                      LEFT JOIN ocx.command_handlers h ON h.command_type = c2.type
                     WHERE c2.status = 'running' AND c2.claimed_until < now()
                       AND c2.type = ANY (types COLLATE "default")
                       AND c2.attempts >= coalesce(h.max_attempts, 5)
                     FOR UPDATE OF c2 SKIP LOCKED) d
             WHERE c.command_id = d.command_id
            RETURNING c.command_id, c.attempts)
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            SELECT dead.command_id, 'dead_letter', dead.attempts, claimer, 'the claim expired'
              FROM dead;

        SELECT array_agg(x.command_id) INTO ids FROM (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'running' AND c.claimed_until < now() AND c.type = ANY (types COLLATE "default")
             ORDER BY c.claimed_until
             LIMIT max_count
             FOR UPDATE SKIP LOCKED) x;
    END IF;
    -- the common case, in one statement: the oldest pending commands
    IF ids IS NULL AND cardinality(types) = 1 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'pending' AND c.type = (types[1] COLLATE "default") AND c.run_after <= now()
             ORDER BY c.seq
             LIMIT max_count
             FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               claim_token = gen_random_uuid(), updated_at = now()
          FROM picked WHERE c.command_id = picked.command_id
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts, claimed.claim_token
      FROM claimed ORDER BY claimed.seq;
        RETURN;
    ELSIF ids IS NULL THEN
        RETURN QUERY
        WITH picked AS (
            SELECT c.command_id FROM ocx.commands c
             WHERE c.status = 'pending' AND c.type = ANY (types COLLATE "default") AND c.run_after <= now()
             ORDER BY c.seq
             LIMIT max_count
             FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               claim_token = gen_random_uuid(), updated_at = now()
          FROM picked WHERE c.command_id = picked.command_id
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts, claimed.claim_token
      FROM claimed ORDER BY claimed.seq;
        RETURN;
    END IF;

    -- expired claims came back: top up with pending ones
    IF coalesce(cardinality(ids), 0) < max_count THEN
        IF cardinality(types) = 1 THEN
            -- one type: a scan of commands_pending_idx in queue order
            SELECT array_agg(x.command_id) INTO more FROM (
                SELECT c.command_id FROM ocx.commands c
                 WHERE c.status = 'pending' AND c.type = (types[1] COLLATE "default") AND c.run_after <= now()
                 ORDER BY c.seq
                 LIMIT max_count - coalesce(cardinality(ids), 0)
                 FOR UPDATE SKIP LOCKED) x;
        ELSE
            SELECT array_agg(x.command_id) INTO more FROM (
                SELECT c.command_id FROM ocx.commands c
                 WHERE c.status = 'pending' AND c.type = ANY (types COLLATE "default") AND c.run_after <= now()
                 ORDER BY c.seq
                 LIMIT max_count - coalesce(cardinality(ids), 0)
                 FOR UPDATE SKIP LOCKED) x;
        END IF;
        ids := coalesce(ids, '{}') || coalesce(more, '{}');
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE ocx.commands c SET status = 'running', attempts = c.attempts + 1,
               claimed_by = claimer, claimed_until = now() + visibility_timeout,
               claim_token = gen_random_uuid(), updated_at = now()
         WHERE c.command_id = ANY (ids)
        RETURNING c.*),
    logged AS (
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT claimed.command_id, 'claimed', claimed.attempts, claimer FROM claimed)
    SELECT claimed.command_id, claimed.type, claimed.data, claimed.metadata, claimed.correlation_id,
           claimed.causation_id, claimed.attempts, claimed.claim_token
      FROM claimed ORDER BY claimed.seq;
END
$$;
COMMENT ON FUNCTION ocx._claim_commands(text[], integer, interval, text) IS
    'internal: claim ready commands of the given types with SKIP LOCKED (expired claims first, then oldest pending)';
REVOKE ALL ON FUNCTION ocx._claim_commands(text[], integer, interval, text) FROM PUBLIC;

CREATE FUNCTION ocx.claim_commands(types text[], max_count integer DEFAULT 1,
                                   visibility_timeout interval DEFAULT '30 seconds',
                                   claimer text DEFAULT NULL)
    RETURNS SETOF ocx.command
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    -- bounded before any query plans the array (a custom plan of a huge one
    -- costs tens of MB of backend memory)
    IF cardinality(types) > 1000 THEN
        RAISE EXCEPTION 'types must name at most 1000 command types'
            USING ERRCODE = 'OX322', DETAIL = format('Got %s.', cardinality(types));
    END IF;
    IF types IS NULL OR cardinality(types) = 0 OR array_ndims(types) > 1
       OR EXISTS (SELECT FROM unnest(types) u WHERE u IS NULL) THEN
        RAISE EXCEPTION 'types must be a non-empty one-dimensional array of command types'
            USING ERRCODE = 'OX322';
    END IF;
    IF max_count IS NULL OR max_count < 1 OR max_count > 10000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 10000'
            USING ERRCODE = 'OX322', DETAIL = format('Got %s.', coalesce(max_count::text, 'NULL'));
    END IF;
    IF visibility_timeout IS NULL OR visibility_timeout <= '0'::interval THEN
        RAISE EXCEPTION 'visibility_timeout must be a positive interval'
            USING ERRCODE = 'OX322';
    END IF;
    SELECT h.command_type INTO t FROM ocx.command_handlers h
     WHERE h.command_type = ANY (types) AND h.handler IS NOT NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'command type "%" is handled inside the server', t
            USING ERRCODE = 'OX321',
                  DETAIL = 'A command has exactly one handler, and this type''s runs in the ocx worker.',
                  HINT = 'Claim only client-handled types, or drop the server handler.';
    END IF;
    RETURN QUERY SELECT * FROM ocx._claim_commands(types, max_count, visibility_timeout,
                                                   coalesce(claimer, pg_catalog.pg_get_userbyid(ocx._caller())::text));
END
$$;
COMMENT ON FUNCTION ocx.claim_commands(text[], integer, interval, text) IS
    'claim up to max_count ready commands of the given types (SKIP LOCKED); an unfinished claim comes back after visibility_timeout; pass each claim_token to complete_command/fail_command';

-- Finish a running command: shared by complete_command and fail_command
-- (the worker calls those too, with the token it claimed).  The claim is
-- fenced: only the holder of the live claim -- status running, the token of
-- the latest claim, visibility timeout not yet run out -- may finish it.
-- Anyone else gets OX324 and nothing changes, so a claimer whose timeout ran
-- out can neither finish nor dead-letter the claim of whoever took over.
CREATE FUNCTION ocx._running_command(id uuid, claim_token uuid) RETURNS ocx.commands
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c ocx.commands;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'command id must not be null' USING ERRCODE = 'OX322';
    END IF;
    SELECT * INTO c FROM ocx.commands x WHERE x.command_id = id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % does not exist', id USING ERRCODE = 'OX320';
    END IF;
    IF _running_command.claim_token IS NULL THEN
        RAISE EXCEPTION 'command % cannot be finished without its claim token', id
            USING ERRCODE = 'OX324',
                  DETAIL = 'Only the holder of the live claim may complete or fail a command, and a call without a token could finish another claimer''s claim.',
                  HINT = 'Pass the claim_token that ocx.claim_commands returned with the command, e.g. ocx.complete_command(id, result, claim_token => ...).';
    END IF;
    IF c.status = 'running' AND c.claim_token = _running_command.claim_token
       AND c.claimed_until >= now() THEN
        RETURN c;
    END IF;
    RAISE EXCEPTION 'claim on command % is lost', id
        USING ERRCODE = 'OX324',
              DETAIL = CASE
                  WHEN c.claim_token IS DISTINCT FROM _running_command.claim_token AND c.status = 'running'
                      THEN format('The claim was taken over: the command was claimed again (attempt %s) by %s.',
                                  c.attempts, coalesce(c.claimed_by, 'another claimer'))
                  WHEN c.claim_token IS DISTINCT FROM _running_command.claim_token
                      THEN format('The token is not from the command''s latest claim; its status is %s.', c.status)
                  WHEN c.status = 'running'
                      THEN 'The claim''s visibility timeout ran out; another claimer may take the command.'
                  ELSE format('The claim has already ended; the command''s status is %s.', c.status) END,
              HINT = 'Nothing was changed. Drop this piece of work: the command is finished or will be claimed again; claim it again with ocx.claim_commands if it is pending.';
END
$$;
COMMENT ON FUNCTION ocx._running_command(uuid, uuid) IS
    'internal: lock a command whose live claim carries this token, else raise OX320/OX322/OX324';
REVOKE ALL ON FUNCTION ocx._running_command(uuid, uuid) FROM PUBLIC;

CREATE FUNCTION ocx.complete_command(command_id uuid, result jsonb DEFAULT NULL,
                                     claim_token uuid DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- one statement on the common path; the checks only when it matched nothing
    WITH done AS (
        UPDATE ocx.commands x SET status = 'succeeded', result = complete_command.result,
               claimed_until = NULL, updated_at = now(), finished_at = now()
         WHERE x.command_id = complete_command.command_id AND x.status = 'running'
           AND x.claim_token = complete_command.claim_token AND x.claimed_until >= now()
        RETURNING x.command_id, x.attempts, x.claimed_by)
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        SELECT done.command_id, 'succeeded', done.attempts, done.claimed_by FROM done;
    IF NOT FOUND THEN
        PERFORM ocx._running_command(complete_command.command_id, complete_command.claim_token);  -- raises why
        RAISE EXCEPTION 'command % changed while it was completed', command_id USING ERRCODE = 'OX324';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.complete_command(uuid, jsonb, uuid) IS
    'mark a claimed command succeeded, with an optional result; claim_token (from claim_commands) must name the live claim, else OX324';

CREATE FUNCTION ocx.fail_command(command_id uuid, error text, retry boolean DEFAULT true,
                                 claim_token uuid DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c       ocx.commands := ocx._running_command(fail_command.command_id, fail_command.claim_token);
    h       ocx.command_handlers;
    delay   interval;
BEGIN
    SELECT * INTO h FROM ocx.command_handlers x WHERE x.command_type = c.type;
    IF NOT FOUND THEN
        h.max_attempts := 5; h.base_delay := '1 second'; h.max_delay := '5 minutes';
    END IF;
    IF coalesce(retry, true) AND c.attempts < h.max_attempts THEN
        delay := ocx.retry_delay(jsonb_build_object('base_delay', h.base_delay, 'max_delay', h.max_delay),
                                 c.attempts);
        UPDATE ocx.commands x SET status = 'pending', claimed_by = NULL, claimed_until = NULL,
               run_after = now() + delay, last_error = fail_command.error, updated_at = now()
         WHERE x.command_id = c.command_id;
        INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
            VALUES (c.command_id, 'failed', c.attempts, c.claimed_by,
                    coalesce(error, '') || ' (retry in ' || delay::text || ')');
        RETURN 'pending';
    END IF;
    UPDATE ocx.commands x SET status = 'dead_letter', claimed_by = NULL, claimed_until = NULL,
           last_error = fail_command.error, updated_at = now(), finished_at = now()
     WHERE x.command_id = c.command_id;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor, detail)
        VALUES (c.command_id, 'dead_letter', c.attempts, c.claimed_by, error);
    RETURN 'dead_letter';
END
$$;
COMMENT ON FUNCTION ocx.fail_command(uuid, text, boolean, uuid) IS
    'record a failed attempt: retried with exponential backoff per the type''s policy, then (or with retry => false) a dead letter; returns the new status; claim_token (from claim_commands) must name the live claim, else OX324';

CREATE FUNCTION ocx.retry_command(command_id uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ocx.commands x SET status = 'pending', attempts = 0, run_after = now(), updated_at = now(),
           finished_at = NULL
     WHERE x.command_id = retry_command.command_id
       AND x.status = 'dead_letter';
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM ocx.commands x WHERE x.command_id = retry_command.command_id) THEN
            RAISE EXCEPTION 'command % does not exist', command_id USING ERRCODE = 'OX320';
        END IF;
        RAISE EXCEPTION 'command % is not a dead letter', command_id
            USING ERRCODE = 'OX323', HINT = 'Only dead-lettered commands can be retried.';
    END IF;
    INSERT INTO ocx.command_history (command_id, event, attempt, actor)
        VALUES (retry_command.command_id, 'retried', 0, pg_catalog.pg_get_userbyid(ocx._caller()));
    PERFORM ocx._command_sent();
END
$$;
COMMENT ON FUNCTION ocx.retry_command(uuid) IS 'send a dead-lettered command again with fresh attempts';

CREATE FUNCTION ocx.purge_commands(older_than interval DEFAULT '7 days',
                                   dead_letters boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be an interval of at least 0' USING ERRCODE = 'OX322';
    END IF;
    DELETE FROM ocx.commands c
     WHERE (c.status = 'succeeded' OR (coalesce(dead_letters, false) AND c.status = 'dead_letter'))
       AND c.finished_at < now() - older_than;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ocx.purge_commands(interval, boolean) IS
    'delete succeeded (and optionally dead-lettered) commands finished longer ago than older_than, with their history; returns how many';

CREATE VIEW ocx.command_status WITH (security_invoker = true) AS
    SELECT c.command_id, c.type, c.status, c.attempts,
           coalesce(h.max_attempts, 5) AS max_attempts,
           CASE WHEN h.command_type IS NULL THEN 'client'
                WHEN h.handler IS NULL THEN 'client' ELSE 'server' END AS handled_by,
           c.correlation_id, c.causation_id, c.claimed_by, c.claimed_until, c.run_after,
           c.result, c.last_error, c.created_at, c.updated_at, c.finished_at,
           (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'at', x.at, 'event', x.event, 'attempt', x.attempt, 'actor', x.actor,
                       'detail', x.detail) ORDER BY x.at)
              FROM ocx.command_history x
             WHERE x.command_id = c.command_id) AS history
      FROM ocx.commands c
      LEFT JOIN ocx.command_handlers h ON h.command_type = c.type;
COMMENT ON VIEW ocx.command_status IS 'each command: status, attempts, handler, result, last error and its history';

CREATE FUNCTION ocx._command_tick() RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_command_tick';
COMMENT ON FUNCTION ocx._command_tick() IS
    'internal: one round of the worker''s command task (runs in-server handlers); true when more is pending';
REVOKE ALL ON FUNCTION ocx._command_tick() FROM PUBLIC;
