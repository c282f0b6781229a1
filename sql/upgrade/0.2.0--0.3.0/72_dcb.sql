
-- Issue 13: consistency boundaries beyond one stream (event tags,
-- ocx.append_if, ocx.read_tagged; sql/parts/25_dcb.sql) and cancelling a
-- scheduled or pending command (ocx.cancel_command;
-- sql/parts/55_cancel_command.sql).  append_if and cancel_command are
-- granted to ocx_writer, read_tagged to ocx_reader, by ocx.privilege_rules()
-- (90_security.sql) when 99_privileges.sql applies it.
ALTER TABLE ocx.events ADD COLUMN tags text[];
COMMENT ON COLUMN ocx.events.tags IS
    'the event''s tags (sorted, distinct; NULL when it has none): what ocx.append_if conditions and ocx.read_tagged select by';
-- fastupdate off: ocx.append_if looks tags up on every call, and a pending
-- list that every lookup scans would grow with the appends
CREATE INDEX events_tags_idx ON ocx.events USING gin (tags) WITH (fastupdate = off)
    WHERE tags IS NOT NULL;

CREATE FUNCTION ocx.append_if(events jsonb, condition jsonb) RETURNS ocx.cursor
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_append_if';
COMMENT ON FUNCTION ocx.append_if(jsonb, jsonb) IS
    'append events (each naming its stream_id, optionally tagged) only if no event matching the condition {"tags": [...], "types": [...], "after": cursor} was written after its cursor, else OX014 and nothing written; returns the cursor of the last event written';

CREATE FUNCTION ocx._tags_arg(tags text[]) RETURNS text[]
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_tags_arg';
COMMENT ON FUNCTION ocx._tags_arg(text[]) IS 'internal: valid tags of a read (1 to 32 non-empty strings), else raises OX015';

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
