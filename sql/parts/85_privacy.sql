-- ---------------------------------------------------------------------------
-- Personal data: crypto-shredding (issue 14; docs/privacy.md, src/privacy.c).
--
-- ocx.define_personal_data names, per event type, the path of the data
-- subject's id and the paths of personal fields.  The append stores those
-- fields encrypted (AES-256-GCM) under the subject's data key; the keys live
-- in ocx.subject_keys (owner-only), wrapped by the key-encryption key in the
-- file ocx.privacy_key_file names.  Every reader reveals them through
-- ocx._reveal / ocx._reveal_metadata (sql/parts/20_read.sql) to members of
-- ocx_personal_data; ocx.forget_subject destroys the key.
-- ---------------------------------------------------------------------------

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
