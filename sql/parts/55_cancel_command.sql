-- ---------------------------------------------------------------------------
-- Cancelling a command (docs/bus.md#cancelling-a-command): a pending command,
-- scheduled (run_after in the future) or waiting for a claim, becomes
-- 'cancelled', a final status no claim or worker picks up.
-- ---------------------------------------------------------------------------

ALTER TABLE ocx.commands DROP CONSTRAINT commands_status_check;
ALTER TABLE ocx.commands ADD CONSTRAINT commands_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'dead_letter', 'cancelled'));

CREATE FUNCTION ocx.cancel_command(command_id uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    IF cancel_command.command_id IS NULL THEN
        RAISE EXCEPTION 'command_id must not be null' USING ERRCODE = 'OX322';
    END IF;
    -- the row lock orders this with a claim: a claim that took the command
    -- first made it running, one that comes later finds it cancelled
    UPDATE ocx.commands x SET status = 'cancelled', updated_at = now(), finished_at = now(),
           run_after = now()
     WHERE x.command_id = cancel_command.command_id AND x.status = 'pending'
    RETURNING x.status INTO st;
    IF FOUND THEN
        INSERT INTO ocx.command_history (command_id, event, attempt, actor)
            SELECT x.command_id, 'cancelled', x.attempts, pg_catalog.pg_get_userbyid(ocx._caller())
              FROM ocx.commands x WHERE x.command_id = cancel_command.command_id;
        RETURN true;
    END IF;
    SELECT x.status INTO st FROM ocx.commands x WHERE x.command_id = cancel_command.command_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'command % does not exist', cancel_command.command_id USING ERRCODE = 'OX320';
    ELSIF st = 'cancelled' THEN
        RETURN false;
    END IF;
    RAISE EXCEPTION 'command % cannot be cancelled', cancel_command.command_id
        USING ERRCODE = 'OX325',
              DETAIL = format('Its status is %s; only pending commands (scheduled or waiting for a claim) can be cancelled.', st),
              HINT = CASE st WHEN 'running' THEN 'A claimed command is finished by its claimer with complete_command or fail_command.'
                             ELSE 'The command has finished.' END;
END
$$;
COMMENT ON FUNCTION ocx.cancel_command(uuid) IS
    'cancel a pending (scheduled or unclaimed) command of the session''s tenant: true when this call cancelled it, false when it was cancelled already; a running or finished command raises OX325, an unknown one OX320';
