-- Issue 10, item 8: claims and leases are fenced (docs/bus.md, "Fencing").
--
-- Every claim of a command gets a new claim_token (ocx.commands.claim_token,
-- returned as the last attribute of ocx.command); complete_command and
-- fail_command take it as a new last parameter and refuse (OX324, nothing
-- changed) unless it names the command's live claim.  The old signatures are
-- dropped: a call written for 0.2.0 resolves to the new function with a NULL
-- token and gets OX324 with a hint to pass the token.  ack refuses (OX303)
-- once the consumer's lease ran out.

ALTER TYPE ocx.command ADD ATTRIBUTE claim_token uuid;
COMMENT ON TYPE ocx.command IS
    'a command as handlers receive it and claim_commands returns it; claim_token names the claim (NULL for in-server handlers)';

ALTER TABLE ocx.commands ADD COLUMN claim_token uuid;

DROP FUNCTION ocx.complete_command(uuid, jsonb);
DROP FUNCTION ocx.fail_command(uuid, text, boolean);
DROP FUNCTION ocx._running_command(uuid);

CREATE OR REPLACE FUNCTION ocx._claim_commands(types text[], max_count integer, visibility_timeout interval,
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
        delay := least(h.base_delay * power(2, c.attempts - 1), h.max_delay);
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

CREATE OR REPLACE FUNCTION ocx.ack(name text, "cursor" ocx.cursor, consumer text DEFAULT 'default') RETURNS void
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
            USING ERRCODE = 'OX300', HINT = 'Create it with ocx.create_subscription.';
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
        RAISE EXCEPTION 'consumer "%" holds no polled partition of subscription "%"', consumer, name
            USING ERRCODE = 'OX303',
                  DETAIL = 'Its lease ran out and another consumer took its partitions, or it has not polled.',
                  HINT = 'Poll again: unacknowledged events are delivered again.';
    END IF;
END
$$;
COMMENT ON FUNCTION ocx.ack(text, ocx.cursor, text) IS
    'acknowledge every event up to cursor that this consumer was given by poll; refused (OX303, nothing written) once its lease ran out';
