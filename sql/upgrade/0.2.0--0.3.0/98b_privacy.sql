-- ---------------------------------------------------------------------------
-- Personal data: crypto-shredding (issue 14; docs/privacy.md).  After
-- 96_reader and 98_vocabulary (which re-create the readers): the readers are
-- re-created here with their one wrapping call (ocx._reveal /
-- ocx._reveal_metadata); the owner-only tables are in 99_privileges.sql.
-- ---------------------------------------------------------------------------
CREATE FUNCTION ocx._reveal(type text, data jsonb, event_id uuid) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_reveal';
COMMENT ON FUNCTION ocx._reveal(text, jsonb, uuid) IS
    'internal: data with its encrypted personal fields in clear (members of ocx_personal_data) or null (others, or erased)';

CREATE FUNCTION ocx._reveal_metadata(type text, data jsonb, metadata jsonb) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_reveal_metadata';
COMMENT ON FUNCTION ocx._reveal_metadata(text, jsonb, jsonb) IS
    'internal: metadata with "erased": true when personal fields of the data were erased (ocx.forget_subject)';

-- read_stream and last_event with the reveal: 98c_removal.sql (after its _hidden_through)

CREATE OR REPLACE FUNCTION ocx._read_log("after" ocx.cursor, max_count integer, types text[], categories text[],
                              upcast boolean, horizon xid8 DEFAULT NULL, after_time timestamptz DEFAULT NULL)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           CASE WHEN _read_log.upcast IS FALSE THEN e.schema_version
                ELSE ocx._upcast_version(e.type, e.schema_version) END, e.time,
           CASE WHEN _read_log.upcast IS FALSE THEN ocx._reveal(e.type, e.data, e.event_id)
                ELSE ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)) END,
           ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.txid < COALESCE(_read_log.horizon, (SELECT ocx.log_horizon()))
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                  ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   '0'::xid8),
                                          COALESCE(ocx.global_position(CASE WHEN _read_log.after_time IS NULL THEN _read_log."after"
                                                                            ELSE ocx._read_start(_read_log."after", _read_log.after_time) END),
                                                   0))
       AND (_read_log.after_time IS NULL OR e.time >= _read_log.after_time)
       AND ocx._log_selects(e.type, e.stream_id, _read_log.types, _read_log.categories)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log.max_count);
END;
COMMENT ON FUNCTION ocx._read_log(ocx.cursor, integer, text[], text[], boolean, xid8, timestamptz) IS
    'internal: the one reader of the log: events after a cursor in gap-free log order, below the horizon (given, or ocx.log_horizon() once), selected by types and categories, upcast or as stored; after_time: only events whose time is >= it, started through the time map (ocx._read_start)';

CREATE OR REPLACE FUNCTION ocx.read_tagged(tags text[], types text[] DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                                max_count integer DEFAULT 1000)
    RETURNS SETOF ocx.event
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_id, e.source, e.type,
           ocx._upcast_version(e.type, e.schema_version), e.time,
           ocx._upcast(e.type, e.schema_version, ocx._reveal(e.type, e.data, e.event_id)),
            ocx._reveal_metadata(e.type, e.data, e.metadata), e.correlation_id,
           e.causation_id, e.tenant_id, e.txid, ocx.cursor(e.txid, e.global_position)
      FROM ocx.events e
     WHERE e.tags @> ocx._tags_arg(read_tagged.tags)
       AND e.txid < ocx.log_horizon()
       AND (e.txid, e.global_position) > (COALESCE(ocx.txid(read_tagged."after"), '0'::xid8),
                                          COALESCE(ocx.global_position(read_tagged."after"), 0))
       AND (read_tagged.types IS NULL OR e.type = ANY (read_tagged.types))
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(read_tagged.max_count);
END;
COMMENT ON FUNCTION ocx.read_tagged(text[], text[], ocx.cursor, integer) IS
    'the events that carry every one of tags (and have one of types, when given) after a cursor, in gap-free log order (below the log horizon, as read_all), upcast; the state a decider builds before ocx.append_if';

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ocx_personal_data') THEN
        CREATE ROLE ocx_personal_data NOLOGIN;
    END IF;
END
$$;

CREATE TABLE ocx.personal_data (
    type        text PRIMARY KEY,
    subject     text NOT NULL,
    fields      text[] NOT NULL,
    defined_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    dropped_at  timestamptz
);
COMMENT ON TABLE ocx.personal_data IS
    'per event type: the path of the data subject''s id and the paths of personal fields (dropped_at: no longer protected on append, still revealed on read)';

CREATE TABLE ocx.subject_keys (
    key_id       uuid PRIMARY KEY,
    subject_hash bytea NOT NULL UNIQUE,
    wrapped_key  bytea NOT NULL,
    kek_id       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- in the heap row, never compressed or out of line: forget_subject
-- overwrites it in place
ALTER TABLE ocx.subject_keys ALTER COLUMN wrapped_key SET STORAGE PLAIN;
COMMENT ON TABLE ocx.subject_keys IS
    'owner-only: one data key per data subject (SHA-256 of its id), wrapped (AES-256-GCM) by the key-encryption key kek_id names';

CREATE TABLE ocx.erasures (
    subject_hash  text NOT NULL,
    erased_by     regrole,
    erased_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    key_destroyed boolean NOT NULL
);
CREATE INDEX erasures_subject_hash_idx ON ocx.erasures (subject_hash);
COMMENT ON TABLE ocx.erasures IS
    'owner-only: every ocx.forget_subject: the subject''s SHA-256 (hex), who, when, whether a key was destroyed';

SELECT pg_catalog.pg_extension_config_dump('ocx.personal_data', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.erasures', '');

CREATE FUNCTION ocx._check_personal_data(subject text, fields text[]) RETURNS void
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_check_personal_data';
COMMENT ON FUNCTION ocx._check_personal_data(text, text[]) IS
    'internal: raises OX621 unless subject and fields are valid paths (object keys joined by ".") and no field holds the subject or overlaps another';

CREATE FUNCTION ocx._privacy_changed() RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_privacy_changed';
COMMENT ON FUNCTION ocx._privacy_changed() IS
    'internal: every backend reloads the personal data definitions (at commit)';

CREATE FUNCTION ocx._shred_subject_key(subject text) RETURNS boolean
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_shred_subject_key';
COMMENT ON FUNCTION ocx._shred_subject_key(text) IS
    'internal: overwrite the subject''s data key in place, then delete it (true when there was one); ocx.forget_subject only';

CREATE FUNCTION ocx.define_personal_data(type text, subject text, fields text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ocx._check_name('event type', type);
    PERFORM ocx._check_personal_data(subject, fields);
    INSERT INTO ocx.personal_data AS d (type, subject, fields)
    VALUES (define_personal_data.type, define_personal_data.subject, define_personal_data.fields)
    ON CONFLICT ON CONSTRAINT personal_data_pkey DO UPDATE
       SET subject = excluded.subject, fields = excluded.fields,
           defined_at = pg_catalog.now(), dropped_at = NULL;
    PERFORM ocx._privacy_changed();
END
$$;
COMMENT ON FUNCTION ocx.define_personal_data(text, text, text[]) IS
    'create or replace: events of this type store the fields (paths) encrypted under the key of the data subject whose id is at subject (a path); see docs/privacy.md';

CREATE FUNCTION ocx.drop_personal_data(type text, if_exists boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE ocx.personal_data d SET dropped_at = pg_catalog.now()
     WHERE d.type OPERATOR(pg_catalog.=) drop_personal_data.type AND d.dropped_at IS NULL;
    IF NOT FOUND AND NOT COALESCE(if_exists, false) THEN
        RAISE EXCEPTION USING ERRCODE = 'OX620',
            MESSAGE = pg_catalog.format('event type "%s" has no personal data definition', type);
    END IF;
    PERFORM ocx._privacy_changed();
END
$$;
COMMENT ON FUNCTION ocx.drop_personal_data(text, boolean) IS
    'new events of this type are stored in clear again; those stored encrypted stay encrypted and are still revealed (OX620 when there is no definition, unless if_exists)';

CREATE FUNCTION ocx.forget_subject(subject text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h         text;
    destroyed boolean;
BEGIN
    IF subject IS NULL OR subject OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'OX625', MESSAGE = 'subject must not be null or empty';
    END IF;
    h := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(subject, 'UTF8')), 'hex');
    destroyed := ocx._shred_subject_key(subject);
    INSERT INTO ocx.erasures (subject_hash, erased_by, key_destroyed)
    VALUES (h, ocx._caller(), destroyed);
    PERFORM ocx.append('ocx.privacy-' OPERATOR(pg_catalog.||) pg_catalog.left(h, 32), NULL,
                       pg_catalog.jsonb_build_object(
                           'type', 'ocx.SubjectForgotten',
                           'data', pg_catalog.jsonb_build_object('subject', subject, 'subject_hash', h,
                                                                 'key_destroyed', destroyed)));
    RETURN destroyed;
END
$$;
COMMENT ON FUNCTION ocx.forget_subject(text) IS
    'crypto-shredding: destroy the data subject''s key (its personal fields then read as null, metadata "erased": true), record it in ocx.erasures and append ocx.SubjectForgotten to stream ocx.privacy-<hash>; true when a key was destroyed';

CREATE FUNCTION ocx.rotate_privacy_key(key_file text) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_rotate_privacy_key';
COMMENT ON FUNCTION ocx.rotate_privacy_key(text) IS
    'superusers: rewrap every data key with the key-encryption key in key_file (then point ocx.privacy_key_file at it); returns the number of keys; docs/privacy.md';

-- the owner-only tables (sql/parts/90_security.sql)
