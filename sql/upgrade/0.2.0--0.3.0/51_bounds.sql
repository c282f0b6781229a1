-- Issue 11 (items 2 and 9): bounded definitions and documented input rules.
-- define_event_type refuses schema versions over 10000 (OX112), the
-- definition cache is sized by the upcasters that exist, stream_partition
-- refuses partitions outside 1 .. 1024 (OX010), and a command's data plus
-- metadata are bounded by ocx.max_event_size and its run_at must be finite
-- (OX322).  See docs/contracts.md#bounds and docs/errors.md.

-- Event types --------------------------------------------------------------

CREATE OR REPLACE FUNCTION ocx.define_event_type(type text, schema_version integer, schema jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.event_types;
BEGIN
    IF type IS NULL OR type OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111', MESSAGE = 'event type must not be empty';
    END IF;
    IF pg_catalog.octet_length(type) OPERATOR(pg_catalog.>) 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111', MESSAGE = 'event type is too long',
            DETAIL = 'Event types are limited to 256 bytes, as in ocx.append.';
    END IF;
    IF schema_version IS NULL OR schema_version OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX111',
            MESSAGE = pg_catalog.format('schema version of event type "%s" must be a positive integer', type),
            DETAIL = pg_catalog.format('Got %s.', COALESCE(schema_version::text, 'NULL'));
    END IF;
    IF schema_version OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX112',
            MESSAGE = pg_catalog.format('schema version of event type "%s" is out of bounds', type),
            DETAIL = pg_catalog.format('Schema versions are limited to 10000; got %s.', schema_version),
            HINT = 'Move the type forward one version at a time.';
    END IF;
    IF schema IS NOT NULL THEN
        PERFORM ocx._check_schema(schema);
    END IF;
    SELECT * INTO old FROM ocx.event_types t WHERE t.type OPERATOR(pg_catalog.=) define_event_type.type FOR UPDATE;
    IF FOUND THEN
        IF schema_version OPERATOR(pg_catalog.<) old.schema_version THEN
            RAISE EXCEPTION USING ERRCODE = 'OX111',
                MESSAGE = pg_catalog.format('event type "%s" is at schema version %s already', type, old.schema_version),
                DETAIL = pg_catalog.format('Schema versions only move forward; got %s.', schema_version),
                HINT = 'Define a new version with an upcaster from the previous one; to lower a version, see "Lowering a version" in docs/contracts.md.';
        END IF;
        IF old.schema_version OPERATOR(pg_catalog.=) schema_version
           AND old.schema IS NOT DISTINCT FROM schema THEN
            RETURN;     -- unchanged: idempotent
        END IF;
        UPDATE ocx.event_types t
           SET schema_version = define_event_type.schema_version,
               schema = define_event_type.schema,
               defined_at = pg_catalog.now()
         WHERE t.type OPERATOR(pg_catalog.=) define_event_type.type;
    ELSE
        INSERT INTO ocx.event_types (type, schema_version, schema)
        VALUES (define_event_type.type, define_event_type.schema_version, define_event_type.schema);
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx.define_event_type(text, integer, jsonb) IS
    'register (or move forward) an event type''s current schema version and JSON Schema; appends of the type are validated against it';

-- Message bus --------------------------------------------------------------

CREATE OR REPLACE FUNCTION ocx.stream_partition(stream_id text, partitions integer) RETURNS integer
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_stream_partition';
COMMENT ON FUNCTION ocx.stream_partition(text, integer) IS
    'the partition (0 .. partitions - 1) of a subscription that a stream''s events belong to; partitions must be 1 .. 1024 (else OX010)';

-- The queue's one way in.  The command belongs to tenant_id, given
-- explicitly: send_command passes the sender's ocx.tenant (it runs as
-- ocx_owner, so row-level security also checks it), the saga task the
-- saga's tenant (the worker, a superuser, is not subject to the policy).
CREATE OR REPLACE FUNCTION ocx._enqueue_command(type text, data jsonb, correlation_id uuid, causation_id uuid,
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

