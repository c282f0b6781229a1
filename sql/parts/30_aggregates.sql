-- ---------------------------------------------------------------------------
-- Aggregates, snapshots, time travel; event types (contracts), upcasters and
-- modules.  See docs/aggregates.md and docs/contracts.md.
--
-- The definition tables are read by C code (src/defcache.c) into a
-- per-backend cache; a statement trigger on each of them sends a relcache
-- invalidation, so every backend drops its cache when a definition changes
-- (at the next command in this transaction, at commit in the others).
-- ---------------------------------------------------------------------------

CREATE TABLE ocx.event_types (
    type            text PRIMARY KEY,
    schema_version  integer NOT NULL CHECK (schema_version > 0),
    schema          jsonb,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.event_types IS 'event contracts: the current schema version (and JSON Schema) of each registered event type';

CREATE TABLE ocx.upcasters (
    type                text NOT NULL REFERENCES ocx.event_types ON DELETE CASCADE,
    from_schema_version integer NOT NULL CHECK (from_schema_version > 0),
    transform           regprocedure,
    spec                jsonb,
    defined_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    definer             regrole NOT NULL,
    PRIMARY KEY (type, from_schema_version),
    CHECK ((transform IS NULL) OPERATOR(pg_catalog.<>) (spec IS NULL))
);
COMMENT ON TABLE ocx.upcasters IS 'upcasters: each turns data of from_schema_version into from_schema_version + 1 (a function or declarative steps)';

CREATE TABLE ocx.aggregates (
    aggregate_type      text PRIMARY KEY,
    apply               regprocedure,
    reducer             jsonb,
    initial_state       jsonb NOT NULL DEFAULT '{}',
    snapshot_every      integer CHECK (snapshot_every > 0),
    definition_version  bigint NOT NULL DEFAULT 1,
    defined_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    definer             regrole NOT NULL,
    CHECK ((apply IS NULL) OPERATOR(pg_catalog.<>) (reducer IS NULL))
);
COMMENT ON TABLE ocx.aggregates IS 'aggregate types: an apply function or a declarative reducer, the initial state and the snapshot interval';
COMMENT ON COLUMN ocx.upcasters.definer IS 'the role that defined the upcaster; its transform function runs as this role';
COMMENT ON COLUMN ocx.aggregates.definer IS 'the role that defined the aggregate; its apply function runs as this role';
COMMENT ON COLUMN ocx.aggregates.definition_version IS 'bumped whenever the definition changes; snapshots of older definitions are never used';

CREATE TABLE ocx.snapshots (
    aggregate_type      text NOT NULL REFERENCES ocx.aggregates ON DELETE CASCADE,
    stream_id           text NOT NULL,
    version             bigint NOT NULL CHECK (version > 0),
    state               jsonb NOT NULL,
    definition_version  bigint NOT NULL,
    fingerprint         bigint NOT NULL,
    taken_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (aggregate_type, stream_id, version)
);
COMMENT ON TABLE ocx.snapshots IS 'aggregate state after version events of a stream, under one definition of the aggregate';
COMMENT ON COLUMN ocx.snapshots.fingerprint IS 'hash of the apply function''s body and of the upcasters when the snapshot was taken';

CREATE TABLE ocx.modules (
    name            text PRIMARY KEY,
    definition      jsonb NOT NULL,
    installed_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE ocx.modules IS 'modules installed with ocx.define_module: a domain''s event types, upcasters and aggregates';

SELECT pg_catalog.pg_extension_config_dump('ocx.event_types', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.upcasters', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.modules', '');

REVOKE ALL ON ocx.event_types, ocx.upcasters, ocx.aggregates, ocx.snapshots, ocx.modules FROM PUBLIC;

-- Definition changes reach every backend's cache through relcache invalidation.
CREATE FUNCTION ocx._definitions_changed() RETURNS trigger
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_definitions_changed';
COMMENT ON FUNCTION ocx._definitions_changed() IS 'trigger: invalidates the per-backend definition caches';

CREATE TRIGGER event_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();
CREATE TRIGGER upcasters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.upcasters
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();
CREATE TRIGGER aggregates_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ocx.aggregates
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._definitions_changed();

-- Checks of declarative definitions, in C with json-c (raise OX101/OX111/OX120).
CREATE FUNCTION ocx._check_schema(schema jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_schema';
COMMENT ON FUNCTION ocx._check_schema(jsonb) IS 'internal: raises OX111 unless schema is in the supported JSON Schema subset';

CREATE FUNCTION ocx._check_upcaster_spec(spec jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_upcaster_spec';
COMMENT ON FUNCTION ocx._check_upcaster_spec(jsonb) IS 'internal: raises OX120 unless spec is a valid list of declarative upcaster steps';

CREATE FUNCTION ocx._check_reducer(reducer jsonb) RETURNS void
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_reducer';
COMMENT ON FUNCTION ocx._check_reducer(jsonb) IS 'internal: raises OX101 unless reducer is a valid set of reducer rules';

CREATE FUNCTION ocx._check_function(fn regprocedure, argtypes regtype[], rettype regtype,
                                    errcode text, what text) RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    IF fn IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = errcode, MESSAGE = pg_catalog.format('%s must not be null', what);
    END IF;
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid OPERATOR(pg_catalog.=) fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = errcode, MESSAGE = pg_catalog.format('%s %s does not exist', what, fn);
    END IF;
    IF p.prokind OPERATOR(pg_catalog.<>) 'f' OR p.proretset
       OR p.prorettype OPERATOR(pg_catalog.<>) rettype
       OR p.proargtypes::pg_catalog.text OPERATOR(pg_catalog.<>)
          pg_catalog.array_to_string(argtypes::pg_catalog.oid[], ' ') THEN
        RAISE EXCEPTION USING ERRCODE = errcode,
            MESSAGE = pg_catalog.format('%s %s has the wrong signature', what, fn),
            DETAIL = pg_catalog.format('It must be a plain function (%s) returning %s.',
                                       pg_catalog.array_to_string(argtypes, ', '), rettype),
            HINT = 'Create a function with exactly that signature and name it with its argument types.';
    END IF;
    IF NOT pg_catalog.has_function_privilege(ocx._caller(), fn, 'EXECUTE') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = pg_catalog.format('permission denied for %s %s', what, fn),
            DETAIL = 'It will run as you, the role that defines it.';
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx._check_function(regprocedure, regtype[], regtype, text, text) IS
    'internal: raises errcode unless fn is a plain function with exactly these argument types and result type';

-- Event types ---------------------------------------------------------------

CREATE FUNCTION ocx.define_event_type(type text, schema_version integer, schema jsonb DEFAULT NULL)
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
    PERFORM ocx._check_name('event type', type);
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

-- Upcasters ------------------------------------------------------------------

CREATE FUNCTION ocx._define_upcaster(type text, from_schema_version integer,
                                     transform regprocedure, spec jsonb)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur integer;
BEGIN
    IF from_schema_version IS NULL OR from_schema_version OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = 'from_schema_version must be a positive integer',
            DETAIL = pg_catalog.format('Got %s.', COALESCE(from_schema_version::text, 'NULL'));
    END IF;
    SELECT t.schema_version INTO cur FROM ocx.event_types t
     WHERE t.type OPERATOR(pg_catalog.=) _define_upcaster.type FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('event type "%s" is not defined', COALESCE(type, 'NULL')),
            HINT = 'Define the event type and its current schema version with ocx.define_event_type first.';
    END IF;
    IF from_schema_version OPERATOR(pg_catalog.>=) cur THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('upcaster from version %s of "%s" goes beyond the current schema version %s',
                                        from_schema_version, type, cur),
            HINT = 'Move the event type forward with ocx.define_event_type first.';
    END IF;
    IF from_schema_version OPERATOR(pg_catalog.>) 1 AND NOT EXISTS (
        SELECT FROM ocx.upcasters u
         WHERE u.type OPERATOR(pg_catalog.=) _define_upcaster.type
           AND u.from_schema_version OPERATOR(pg_catalog.=) (_define_upcaster.from_schema_version OPERATOR(pg_catalog.-) 1)) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120',
            MESSAGE = pg_catalog.format('gap in the upcaster chain of "%s"', type),
            DETAIL = pg_catalog.format('There is no upcaster from version %s to %s.',
                                       from_schema_version OPERATOR(pg_catalog.-) 1, from_schema_version),
            HINT = 'Define upcasters in order, starting at version 1.';
    END IF;
    IF transform IS NOT NULL THEN
        PERFORM ocx._check_function(transform, ARRAY['jsonb']::pg_catalog.regtype[], 'jsonb', 'OX120', 'upcaster function');
    ELSIF spec IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OX120', MESSAGE = 'upcaster needs a transform function or a spec';
    ELSE
        PERFORM ocx._check_upcaster_spec(spec);
    END IF;
    INSERT INTO ocx.upcasters AS u (type, from_schema_version, transform, spec, definer)
    VALUES (type, from_schema_version, transform, spec, ocx._caller())
    ON CONFLICT ON CONSTRAINT upcasters_pkey DO UPDATE
       SET transform = excluded.transform, spec = excluded.spec, definer = excluded.definer,
           defined_at = excluded.defined_at
     WHERE u.transform IS DISTINCT FROM excluded.transform OR u.spec IS DISTINCT FROM excluded.spec
        OR u.definer OPERATOR(pg_catalog.<>) excluded.definer;
END;
$$;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, regprocedure, jsonb) IS
    'internal: both forms of ocx.define_upcaster; records the caller (ocx._caller()) as the definer';

CREATE FUNCTION ocx._define_upcaster(type text, from_schema_version integer, transform regprocedure)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(_define_upcaster.type, _define_upcaster.from_schema_version,
                                _define_upcaster.transform, NULL);
END;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, regprocedure) IS
    'internal: the body of ocx.define_upcaster(text, integer, regprocedure), run as ocx_owner';

CREATE FUNCTION ocx._define_upcaster(type text, from_schema_version integer, spec jsonb)
    RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
    SELECT ocx._define_upcaster(_define_upcaster.type, _define_upcaster.from_schema_version,
                                NULL, _define_upcaster.spec);
END;
COMMENT ON FUNCTION ocx._define_upcaster(text, integer, jsonb) IS
    'internal: the body of ocx.define_upcaster(text, integer, jsonb), run as ocx_owner';

-- Both run with ocx_owner's rights and record their caller: see src/security.c.
CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, transform regprocedure)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, regprocedure) IS
    'upcast data of an event type from from_schema_version to the next with a jsonb -> jsonb function (run as the caller)';

CREATE FUNCTION ocx.define_upcaster(type text, from_schema_version integer, spec jsonb)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_upcaster(text, integer, jsonb) IS
    'upcast data of an event type from from_schema_version to the next with declarative steps (rename, default, remove, move, cast)';

CREATE FUNCTION ocx.upcast(e ocx.event) RETURNS ocx.event
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN ROW(e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
               ocx._upcast_version(e.type, e.schema_version), e.time,
               ocx._upcast(e.type, e.schema_version, e.data), e.metadata, e.correlation_id,
               e.causation_id, e.tenant_id, e.txid, e."cursor")::ocx.event;
COMMENT ON FUNCTION ocx.upcast(ocx.event) IS 'the event upcast to its type''s current schema version (reads do this already)';

-- Aggregates -----------------------------------------------------------------

CREATE FUNCTION ocx._define_aggregate(aggregate_type text, apply regprocedure DEFAULT NULL,
                                     initial_state jsonb DEFAULT '{}', snapshot_every integer DEFAULT NULL,
                                     reducer jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old ocx.aggregates;
BEGIN
    IF aggregate_type IS NULL OR aggregate_type OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101', MESSAGE = 'aggregate type must not be empty';
    END IF;
    IF pg_catalog.octet_length(aggregate_type) OPERATOR(pg_catalog.>) 256 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101', MESSAGE = 'aggregate type is too long',
            DETAIL = 'Aggregate types are limited to 256 bytes.';
    END IF;
    PERFORM ocx._check_name('aggregate type', aggregate_type);
    IF (apply IS NULL) OPERATOR(pg_catalog.=) (reducer IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('aggregate "%s" needs exactly one of apply and reducer', aggregate_type),
            HINT = 'Pass an apply function (state jsonb, event ocx.event) -> jsonb, or reducer => ''{...}'' rules.';
    END IF;
    IF apply IS NOT NULL THEN
        PERFORM ocx._check_function(apply, ARRAY['jsonb', 'ocx.event']::pg_catalog.regtype[], 'jsonb',
                                    'OX101', 'apply function');
    ELSE
        PERFORM ocx._check_reducer(reducer);
    END IF;
    IF initial_state IS NULL OR pg_catalog.jsonb_typeof(initial_state) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('initial state of aggregate "%s" must be a JSON object', aggregate_type);
    END IF;
    IF snapshot_every IS NOT NULL AND snapshot_every OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'OX101',
            MESSAGE = pg_catalog.format('snapshot_every of aggregate "%s" must be positive', aggregate_type),
            DETAIL = pg_catalog.format('Got %s.', snapshot_every),
            HINT = 'Use NULL for no automatic snapshots.';
    END IF;
    SELECT * INTO old FROM ocx.aggregates a
     WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ocx.aggregates (aggregate_type, apply, reducer, initial_state, snapshot_every, definer)
        VALUES (aggregate_type, apply, reducer, initial_state, snapshot_every, ocx._caller());
    ELSIF old.apply IS NOT DISTINCT FROM apply AND old.reducer IS NOT DISTINCT FROM reducer
          AND old.initial_state OPERATOR(pg_catalog.=) initial_state
          AND old.definer OPERATOR(pg_catalog.=) ocx._caller() THEN
        -- the fold is unchanged: snapshots stay valid
        IF old.snapshot_every IS DISTINCT FROM snapshot_every THEN
            UPDATE ocx.aggregates a SET snapshot_every = _define_aggregate.snapshot_every
             WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
        END IF;
    ELSE
        -- a changed fold: no stale state may ever be read again
        UPDATE ocx.aggregates a
           SET apply = _define_aggregate.apply, reducer = _define_aggregate.reducer,
               initial_state = _define_aggregate.initial_state,
               snapshot_every = _define_aggregate.snapshot_every,
               definer = ocx._caller(),
               definition_version = a.definition_version OPERATOR(pg_catalog.+) 1,
               defined_at = pg_catalog.now()
         WHERE a.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
        DELETE FROM ocx.snapshots s
         WHERE s.aggregate_type OPERATOR(pg_catalog.=) _define_aggregate.aggregate_type;
    END IF;
END;
$$;
COMMENT ON FUNCTION ocx._define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'internal: the body of ocx.define_aggregate, run as ocx_owner; records the caller (ocx._caller()) as the definer';

-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_aggregate(type text, apply regprocedure DEFAULT NULL,
                                     initial_state jsonb DEFAULT '{}', snapshot_every integer DEFAULT NULL,
                                     reducer jsonb DEFAULT NULL)
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_aggregate(text, regprocedure, jsonb, integer, jsonb) IS
    'define (or redefine) an aggregate type: apply(state jsonb, event ocx.event) -> jsonb or declarative reducer rules; redefinition drops its snapshots';

CREATE FUNCTION ocx.load(type text, stream_id text, as_of_version bigint DEFAULT NULL,
                         as_of_time timestamptz DEFAULT NULL, include_archived boolean DEFAULT false,
                         OUT state jsonb, OUT version bigint)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_load';
COMMENT ON FUNCTION ocx.load(text, text, bigint, timestamptz, boolean) IS
    'the aggregate''s state after replaying the stream (from the newest usable snapshot), optionally as of a version or a time; include_archived: replay archived events too (ocx.archive)';

CREATE FUNCTION ocx.snapshot(type text, stream_id text) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_snapshot';
COMMENT ON FUNCTION ocx.snapshot(text, text) IS 'store a snapshot of the aggregate''s current state; returns its version';

-- Modules ----------------------------------------------------------------------

CREATE FUNCTION ocx._define_module(name text, definition jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    x jsonb;
BEGIN
    IF name IS NULL OR name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130', MESSAGE = 'module name must not be empty';
    END IF;
    PERFORM ocx._check_name('module', name);
    IF definition IS NULL OR pg_catalog.jsonb_typeof(definition) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130',
            MESSAGE = pg_catalog.format('definition of module "%s" must be a JSON object', name);
    END IF;
    FOR k IN SELECT pg_catalog.jsonb_object_keys(definition) LOOP
        IF k OPERATOR(pg_catalog.<>) ALL (ARRAY['event_types', 'upcasters', 'aggregates', 'description']) THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('unknown key "%s" in module "%s"', k, name),
                HINT = 'A module has the keys event_types, upcasters, aggregates and description.';
        END IF;
        IF k OPERATOR(pg_catalog.<>) 'description'
           AND pg_catalog.jsonb_typeof(definition OPERATOR(pg_catalog.->) k) OPERATOR(pg_catalog.<>) 'array' THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('"%s" of module "%s" must be an array', k, name);
        END IF;
    END LOOP;

    FOR x IN SELECT pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'event_types', '[]')) LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?&) ARRAY['type', 'schema_version'] THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('event type entry of module "%s" needs "type" and "schema_version"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx.define_event_type(x OPERATOR(pg_catalog.->>) 'type',
                                      (x OPERATOR(pg_catalog.->>) 'schema_version')::integer,
                                      NULLIF(x OPERATOR(pg_catalog.->) 'schema', 'null'));
    END LOOP;

    FOR x IN SELECT u FROM pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'upcasters', '[]')) u
             ORDER BY u OPERATOR(pg_catalog.->>) 'type', (u OPERATOR(pg_catalog.->>) 'from_schema_version')::integer LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?&) ARRAY['type', 'from_schema_version']
           OR (x OPERATOR(pg_catalog.?) 'transform') OPERATOR(pg_catalog.=) (x OPERATOR(pg_catalog.?) 'spec') THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('upcaster entry of module "%s" needs "type", "from_schema_version" and one of "transform" and "spec"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx._define_upcaster(x OPERATOR(pg_catalog.->>) 'type',
                                     (x OPERATOR(pg_catalog.->>) 'from_schema_version')::integer,
                                     ocx._regprocedure_as(x OPERATOR(pg_catalog.->>) 'transform', ocx._caller()),
                                     NULLIF(x OPERATOR(pg_catalog.->) 'spec', 'null'));
    END LOOP;

    FOR x IN SELECT pg_catalog.jsonb_array_elements(COALESCE(definition OPERATOR(pg_catalog.->) 'aggregates', '[]')) LOOP
        IF pg_catalog.jsonb_typeof(x) OPERATOR(pg_catalog.<>) 'object'
           OR NOT x OPERATOR(pg_catalog.?) 'aggregate_type' THEN
            RAISE EXCEPTION USING ERRCODE = 'OX130',
                MESSAGE = pg_catalog.format('aggregate entry of module "%s" needs "aggregate_type"', name),
                DETAIL = pg_catalog.format('Got %s.', x);
        END IF;
        PERFORM ocx.define_aggregate(x OPERATOR(pg_catalog.->>) 'aggregate_type',
                                     ocx._regprocedure_as(x OPERATOR(pg_catalog.->>) 'apply', ocx._caller()),
                                     COALESCE(NULLIF(x OPERATOR(pg_catalog.->) 'initial_state', 'null'), '{}'),
                                     (x OPERATOR(pg_catalog.->>) 'snapshot_every')::integer,
                                     NULLIF(x OPERATOR(pg_catalog.->) 'reducer', 'null'));
    END LOOP;

    INSERT INTO ocx.modules AS m (name, definition) VALUES (name, definition)
    ON CONFLICT ON CONSTRAINT modules_pkey DO UPDATE
       SET definition = excluded.definition, installed_at = pg_catalog.now()
     WHERE m.definition OPERATOR(pg_catalog.<>) excluded.definition;
EXCEPTION
    WHEN invalid_text_representation OR numeric_value_out_of_range OR undefined_function
         OR invalid_parameter_value OR syntax_error OR invalid_name THEN
        RAISE EXCEPTION USING ERRCODE = 'OX130',
            MESSAGE = pg_catalog.format('invalid module "%s"', name),
            DETAIL = SQLERRM;
END;
$$;
COMMENT ON FUNCTION ocx._define_module(text, jsonb) IS
    'internal: the body of ocx.define_module, run as ocx_owner; what it defines records the caller as definer';

-- Runs with ocx_owner's rights and records its caller: see src/security.c.
CREATE FUNCTION ocx.define_module(name text, definition jsonb) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_owner_call';
COMMENT ON FUNCTION ocx.define_module(text, jsonb) IS
    'install a domain''s event types, upcasters and aggregates in one call; installing the same definition again changes nothing';

CREATE FUNCTION ocx.last_load(OUT aggregate_type text, OUT stream_id text, OUT version bigint,
                              OUT snapshot_version bigint, OUT replayed bigint, OUT snapshot_saved boolean)
    RETURNS record
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_last_load';
COMMENT ON FUNCTION ocx.last_load() IS
    'what this session''s last ocx.load or ocx.snapshot did: the version loaded, the snapshot it started from (0: none), events replayed, whether it stored a snapshot';
