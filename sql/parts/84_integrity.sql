-- ---------------------------------------------------------------------------
-- Tamper evidence (docs/integrity.md): every event's hash chained to its
-- stream's previous one, the stream's head, the worker's Merkle seals of the
-- log, the record of authorised removals, verify and prove.
-- ---------------------------------------------------------------------------

ALTER TABLE ocx.events ADD COLUMN hash bytea;
COMMENT ON COLUMN ocx.events.hash IS
    'SHA-256 of the event''s stored fields and its stream''s previous hash (docs/integrity.md); NULL only for events written without the chain';
-- The one reader over the stored rows (sql/parts/22_reader.sql): the events
-- after a cursor in log order, below the horizon (given, or
-- ocx.log_horizon() once), as they are stored: their cursor and hash, never
-- revealed or upcast.  What the sealing task reads (src/reader.c,
-- OcxReadLogStored): a seal covers the stored rows.  Here and not in
-- 22_reader.sql because the hash column is this part's.
CREATE FUNCTION ocx._read_log_stored("after" ocx.cursor, max_count integer, horizon xid8 DEFAULT NULL)
    RETURNS TABLE (txid xid8, global_position bigint, hash bytea)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT e.txid, e.global_position, e.hash
      FROM ocx.events e
     WHERE e.txid < (SELECT b.below FROM ocx._log_bounds(NULL, _read_log_stored.horizon) b)
       AND (e.txid, e.global_position) > (SELECT b.after_txid, b.after_position
                                            FROM ocx._log_bounds(_read_log_stored."after", _read_log_stored.horizon) b)
     ORDER BY e.txid, e.global_position
     LIMIT ocx._count_arg(_read_log_stored.max_count);
END;
COMMENT ON FUNCTION ocx._read_log_stored(ocx.cursor, integer, xid8) IS
    'internal: the one reader over the stored rows: the cursor and hash of the events after a cursor in log order, below the horizon (given, or ocx.log_horizon() once), as stored (what a seal covers)';
-- ocx.streams.head is created with the table (10_log.sql), before hidden_through,
-- in the order the upgrade adds them (98a_integrity.sql, then 98c_removal.sql).
COMMENT ON COLUMN ocx.streams.head IS 'the hash of the stream''s last event: the head of its hash chain';

-- The hash of one event (docs/integrity.md, "The event hash"): what an
-- append stores in ocx.events.hash and ocx.verify() recomputes.
CREATE FUNCTION ocx._event_hash(prev bytea, stream_id text, stream_version bigint, event_id uuid,
                                source text, type text, schema_version integer, "time" timestamptz,
                                data jsonb, metadata jsonb, correlation_id uuid, causation_id uuid,
                                tenant_id text, tags text[])
    RETURNS bytea
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_event_hash';
COMMENT ON FUNCTION ocx._event_hash(bytea, text, bigint, uuid, text, text, integer, timestamptz, jsonb, jsonb, uuid, uuid, text, text[]) IS
    'internal: SHA-256 of an event''s canonical encoding after the previous hash of its stream (docs/integrity.md)';

-- Seals: Merkle checkpoints of the log in log order (docs/integrity.md).
CREATE SEQUENCE ocx.seals_seal_id_seq AS bigint;
CREATE TABLE ocx.seals (
    seal_id      bigint NOT NULL DEFAULT pg_catalog.nextval('ocx.seals_seal_id_seq') PRIMARY KEY,
    first_cursor ocx.cursor NOT NULL,
    last_cursor  ocx.cursor NOT NULL,
    events       bigint NOT NULL CHECK (events > 0),
    root         bytea NOT NULL,
    sealed_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    signature    bytea,
    key_id       text
);
ALTER SEQUENCE ocx.seals_seal_id_seq OWNED BY ocx.seals.seal_id;
CREATE INDEX seals_last_cursor_idx ON ocx.seals (last_cursor);
COMMENT ON TABLE ocx.seals IS
    'Merkle checkpoints of the log: the events from first_cursor to last_cursor in log order, their root, and its Ed25519 signature (docs/integrity.md)';
COMMENT ON COLUMN ocx.seals.root IS 'Merkle root over the leaves SHA-256(0x00 || txid || global_position || hash) of the sealed events';
COMMENT ON COLUMN ocx.seals.signature IS 'Ed25519 signature of the seal message (docs/integrity.md), NULL when no ocx.seal_signing_key_file was set';
COMMENT ON COLUMN ocx.seals.key_id IS 'the first 8 bytes of SHA-256 of the signing key''s raw public key, in hex';
SELECT pg_catalog.pg_extension_config_dump('ocx.seals', '');
SELECT pg_catalog.pg_extension_config_dump('ocx.seals_seal_id_seq', '');

-- Authorised removals (hard deletes, retention passes): what ocx.verify()
-- tells from tampering.  Written by the removal code only, as the owner.
CREATE TABLE ocx.removals (
    stream_id     text NOT NULL,
    first_version bigint NOT NULL,
    last_version  bigint NOT NULL,
    events        bigint NOT NULL CHECK (events >= 0),
    last_hash     bytea,
    kind          text NOT NULL CHECK (kind IN ('hard_delete', 'retention')),
    removed_by    name NOT NULL DEFAULT CURRENT_USER,
    removed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT removals_versions_check CHECK (first_version >= 1 AND last_version >= first_version)
);
CREATE INDEX removals_stream_idx ON ocx.removals (stream_id, last_version);
COMMENT ON TABLE ocx.removals IS
    'authorised removals of events (hard delete, retention): versions first..last of a stream and the hash of the last removed one, so ocx.verify() reports the gap as authorised and chains on from it';
COMMENT ON COLUMN ocx.removals.last_hash IS 'ocx.events.hash of the last removed event (version last_version): the previous hash of the first kept event after the gap';
SELECT pg_catalog.pg_extension_config_dump('ocx.removals', '');

-- Seals and removals are append-only like the log.
CREATE TRIGGER seals_immutable_row BEFORE UPDATE OR DELETE ON ocx.seals
    FOR EACH ROW EXECUTE FUNCTION ocx._refuse_modification();
CREATE TRIGGER seals_immutable_truncate BEFORE TRUNCATE ON ocx.seals
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification();
ALTER TABLE ocx.seals ENABLE ALWAYS TRIGGER seals_immutable_row;
ALTER TABLE ocx.seals ENABLE ALWAYS TRIGGER seals_immutable_truncate;
CREATE TRIGGER removals_immutable_row BEFORE UPDATE OR DELETE ON ocx.removals
    FOR EACH ROW EXECUTE FUNCTION ocx._refuse_modification();
CREATE TRIGGER removals_immutable_truncate BEFORE TRUNCATE ON ocx.removals
    FOR EACH STATEMENT EXECUTE FUNCTION ocx._refuse_modification();
ALTER TABLE ocx.removals ENABLE ALWAYS TRIGGER removals_immutable_row;
ALTER TABLE ocx.removals ENABLE ALWAYS TRIGGER removals_immutable_truncate;

CREATE FUNCTION ocx.seal() RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_seal';
COMMENT ON FUNCTION ocx.seal() IS
    'seal the events below the log horizon that no seal covers yet (at most ocx.seal_max_events) now; returns the new seal''s id, NULL when there was nothing to seal';

CREATE FUNCTION ocx._seal_problem(seal_id bigint, public_key text) RETURNS text
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_seal_problem';
COMMENT ON FUNCTION ocx._seal_problem(bigint, text) IS
    'internal: what is wrong with a seal (count, root, with a public key its signature), NULL when nothing';

CREATE FUNCTION ocx.verify_seal(seal_id bigint, public_key text DEFAULT NULL) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL RESTRICTED
    RETURN ocx._seal_problem(seal_id, public_key) IS NULL;
COMMENT ON FUNCTION ocx.verify_seal(bigint, text) IS
    'whether a seal''s events still give its root and, with a PEM Ed25519 public key, whether its signature verifies';

CREATE FUNCTION ocx.prove(event_id uuid) RETURNS jsonb
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_prove';
COMMENT ON FUNCTION ocx.prove(uuid) IS
    'an inclusion proof of a sealed event: its stored fields, hash, Merkle leaf, the path of sibling hashes and the seal (docs/integrity.md, "Proofs")';

-- Whether versions a..b of a stream were removed by recorded removals, and
-- the hash the first kept event after them chains from (NULL: not covered).
CREATE FUNCTION ocx._removed_gap(stream_id text, a bigint, b bigint,
                                 OUT covered boolean, OUT last_hash bytea, OUT kinds text)
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT COALESCE(pg_catalog.sum(LEAST(r.last_version, b) OPERATOR(pg_catalog.-)
                                   GREATEST(r.first_version, a) OPERATOR(pg_catalog.+) 1), 0)
               OPERATOR(pg_catalog.>=) (b OPERATOR(pg_catalog.-) a OPERATOR(pg_catalog.+) 1),
           (SELECT r2.last_hash FROM ocx.removals r2
             WHERE r2.stream_id OPERATOR(pg_catalog.=) _removed_gap.stream_id
               AND r2.last_version OPERATOR(pg_catalog.=) b
             ORDER BY r2.removed_at DESC LIMIT 1),
           pg_catalog.string_agg(DISTINCT r.kind, ',')
      FROM ocx.removals r
     WHERE r.stream_id OPERATOR(pg_catalog.=) _removed_gap.stream_id
       AND r.first_version OPERATOR(pg_catalog.<=) b AND r.last_version OPERATOR(pg_catalog.>=) a;
END;
COMMENT ON FUNCTION ocx._removed_gap(text, bigint, bigint) IS
    'internal: whether recorded removals cover versions a..b of a stream, and the last removed hash the next event chains from';

CREATE FUNCTION ocx.verify(stream_id text DEFAULT NULL, public_key text DEFAULT NULL)
    RETURNS TABLE (stream text, version bigint, seal_id bigint, problem text, authorised boolean)
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    want    text := verify.stream_id;
    r       record;
    s       record;
    g       record;
    cur     text := NULL;
    has_row boolean := false;
    s_ver   bigint;
    s_head  bytea;
    last_v  bigint := 0;
    last_h  bytea;
    last_bad boolean := false;
    calc    bytea;
    prev_last ocx.cursor;
    gap     boolean;
    -- the events checked: the log, and on a partitioned log its archive too
    -- (ocx.archive moves whole partitions there; their events still chain)
    src     text := 'ocx.events';
BEGIN
    IF ocx._log_partitioned() THEN
        src := '(SELECT l.stream_id, l.stream_version, l.hash, l.global_position, l.txid, l.event_id, l.source, '
            || 'l.type, l.schema_version, l.time, l.data, l.metadata, l.correlation_id, l.causation_id, '
            || 'l.tenant_id, l.tags FROM ocx.events l UNION ALL '
            || 'SELECT a.stream_id, a.stream_version, a.hash, a.global_position, a.txid, a.event_id, a.source, '
            || 'a.type, a.schema_version, a.time, a.data, a.metadata, a.correlation_id, a.causation_id, '
            || 'a.tenant_id, a.tags FROM ocx_archive.events a)';
    END IF;
    -- every stream's chain, in version order; calc assumes the previous
    -- version is present (gaps are looked at below)
    FOR r IN EXECUTE pg_catalog.format(
        'SELECT e.stream_id AS sid, e.stream_version AS v, e.hash AS h, e.global_position AS gp, '
        '       ocx._event_hash(CASE WHEN pg_catalog.lag(e.stream_version) OVER w '
        '                                 OPERATOR(pg_catalog.=) (e.stream_version OPERATOR(pg_catalog.-) 1) '
        '                            THEN pg_catalog.lag(e.hash) OVER w END, '
        '                       e.stream_id, e.stream_version, e.event_id, e.source, e.type, '
        '                       e.schema_version, e.time, e.data, e.metadata, e.correlation_id, '
        '                       e.causation_id, e.tenant_id, e.tags) AS calc '
        '  FROM %s e '
        ' WHERE $1 IS NULL OR e.stream_id OPERATOR(pg_catalog.=) $1 '
        'WINDOW w AS (PARTITION BY e.stream_id ORDER BY e.stream_version) '
        ' ORDER BY e.stream_id, e.stream_version', src) USING want
    LOOP
        IF cur IS DISTINCT FROM r.sid THEN
            IF cur IS NOT NULL THEN
                RETURN QUERY SELECT * FROM ocx._verify_tail(cur, has_row, s_ver, s_head, last_v, last_h, last_bad);
            END IF;
            cur := r.sid;
            SELECT true, st.version, st.head INTO has_row, s_ver, s_head
              FROM ocx.streams st WHERE st.stream_id OPERATOR(pg_catalog.=) r.sid;
            has_row := COALESCE(has_row, false);
            last_v := 0;
            last_h := NULL;
            last_bad := false;
        END IF;
        IF NOT has_row THEN
            RETURN QUERY SELECT r.sid, r.v, NULL::bigint, 'event of a stream that has no ocx.streams row', false;
            CONTINUE;
        ELSIF r.v OPERATOR(pg_catalog.>) s_ver THEN
            RETURN QUERY SELECT r.sid, r.v, NULL::bigint,
                                pg_catalog.format('event beyond the stream''s version %s', s_ver), false;
            CONTINUE;
        END IF;
        calc := r.calc;
        last_bad := false;
        IF r.v OPERATOR(pg_catalog.>) (last_v OPERATOR(pg_catalog.+) 1) THEN
            SELECT * INTO g FROM ocx._removed_gap(r.sid, last_v OPERATOR(pg_catalog.+) 1, r.v OPERATOR(pg_catalog.-) 1);
            IF g.covered AND g.last_hash IS NOT NULL THEN
                RETURN QUERY SELECT r.sid, last_v OPERATOR(pg_catalog.+) 1, NULL::bigint,
                                    pg_catalog.format('versions %s..%s removed (%s)', last_v OPERATOR(pg_catalog.+) 1,
                                                      r.v OPERATOR(pg_catalog.-) 1, g.kinds), true;
                -- a recorded head that is no SHA-256 hash: the kept event does not chain from it
                calc := NULL;
                EXECUTE pg_catalog.format(
                    'SELECT ocx._event_hash($1, e.stream_id, e.stream_version, e.event_id, e.source, e.type, '
                    '                       e.schema_version, e.time, e.data, e.metadata, e.correlation_id, '
                    '                       e.causation_id, e.tenant_id, e.tags) '
                    '  FROM %s e '
                    ' WHERE e.global_position OPERATOR(pg_catalog.=) $2 '
                    '   AND pg_catalog.length($1) OPERATOR(pg_catalog.=) 32', src)
                   INTO calc USING g.last_hash, r.gp;
            ELSE
                RETURN QUERY SELECT r.sid, last_v OPERATOR(pg_catalog.+) 1, NULL::bigint,
                                    pg_catalog.format('versions %s..%s missing', last_v OPERATOR(pg_catalog.+) 1,
                                                      r.v OPERATOR(pg_catalog.-) 1), false;
                calc := r.h;    -- its previous hash is gone: the gap is the finding
            END IF;
        END IF;
        IF r.h IS NULL THEN
            RETURN QUERY SELECT r.sid, r.v, NULL::bigint, 'hash missing', false;
            last_bad := true;
        ELSIF calc IS DISTINCT FROM r.h THEN
            RETURN QUERY SELECT r.sid, r.v, NULL::bigint,
                                'hash does not match the stored fields and the previous hash', false;
            last_bad := true;
        END IF;
        last_v := r.v;
        last_h := r.h;
    END LOOP;
    IF cur IS NOT NULL THEN
        RETURN QUERY SELECT * FROM ocx._verify_tail(cur, has_row, s_ver, s_head, last_v, last_h, last_bad);
    END IF;

    -- streams whose every event is gone
    FOR s IN EXECUTE pg_catalog.format(
        'SELECT st.stream_id AS sid, st.version AS v, st.head AS h FROM ocx.streams st '
        ' WHERE ($1 IS NULL OR st.stream_id OPERATOR(pg_catalog.=) $1) '
        '   AND st.version OPERATOR(pg_catalog.>) 0 '
        '   AND NOT EXISTS (SELECT FROM %s e WHERE e.stream_id OPERATOR(pg_catalog.=) st.stream_id)', src)
        USING want
    LOOP
        RETURN QUERY SELECT * FROM ocx._verify_tail(s.sid, true, s.v, s.h, 0, NULL, false);
    END LOOP;

    IF want IS NOT NULL THEN
        RETURN;
    END IF;
    -- every seal: its events give its root, it follows the previous one
    -- with no unsealed event between them, and (with a key) its signature
    FOR s IN SELECT x.seal_id AS id, x.first_cursor AS f, x.last_cursor AS l, x.sealed_at AS at
               FROM ocx.seals x ORDER BY x.seal_id LOOP
        -- (SELECT 1: Citus cannot plan an EXISTS over a distributed log
        -- whose subquery selects no column)
        gap := false;
        IF prev_last IS NOT NULL AND NOT s.f OPERATOR(ocx.<=) prev_last THEN
            EXECUTE pg_catalog.format(
                'SELECT EXISTS (SELECT 1 FROM %s e '
                ' WHERE (e.txid, e.global_position) OPERATOR(pg_catalog.>) ($1, $2) '
                '   AND (e.txid, e.global_position) OPERATOR(pg_catalog.<) ($3, $4))', src)
               INTO gap USING ocx.txid(prev_last), ocx.global_position(prev_last), ocx.txid(s.f), ocx.global_position(s.f);
        END IF;
        IF prev_last IS NOT NULL AND (s.f OPERATOR(ocx.<=) prev_last OR gap) THEN
            RETURN QUERY SELECT NULL::text, NULL::bigint, s.id,
                                'seal does not follow the previous seal (a seal is missing, or overlaps)', false;
        END IF;
        prev_last := s.l;
        problem := ocx._seal_problem(s.id, public_key);
        IF problem IS NOT NULL THEN
            RETURN QUERY SELECT NULL::text, NULL::bigint, s.id, problem,
                                problem LIKE 'seal holds %' AND EXISTS (
                                    SELECT FROM ocx.removals rm WHERE rm.removed_at OPERATOR(pg_catalog.>=) s.at);
        END IF;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION ocx.verify(text, text) IS
    'check the hash chain of one stream (or of every stream and every seal): one row per finding (stream, version or seal, what is wrong, whether an authorised removal explains it); no row when intact';

-- The end of one stream's check: its head and the versions after its last event.
CREATE FUNCTION ocx._verify_tail(sid text, has_row boolean, s_ver bigint, s_head bytea,
                                 last_v bigint, last_h bytea, last_bad boolean)
    RETURNS TABLE (stream text, version bigint, seal_id bigint, problem text, authorised boolean)
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    g record;
BEGIN
    IF NOT has_row THEN
        RETURN;
    END IF;
    IF s_ver OPERATOR(pg_catalog.>) last_v THEN
        SELECT * INTO g FROM ocx._removed_gap(sid, last_v OPERATOR(pg_catalog.+) 1, s_ver);
        RETURN QUERY SELECT sid, last_v OPERATOR(pg_catalog.+) 1, NULL::bigint,
                            CASE WHEN g.covered
                                 THEN pg_catalog.format('versions %s..%s removed (%s)', last_v OPERATOR(pg_catalog.+) 1, s_ver, g.kinds)
                                 ELSE pg_catalog.format('versions %s..%s missing', last_v OPERATOR(pg_catalog.+) 1, s_ver) END,
                            COALESCE(g.covered, false);
    ELSIF last_h IS DISTINCT FROM s_head AND NOT last_bad THEN
        RETURN QUERY SELECT sid, s_ver, NULL::bigint, 'stream head does not match its last event''s hash', false;
    END IF;
END
$fn$;
COMMENT ON FUNCTION ocx._verify_tail(text, boolean, bigint, bytea, bigint, bytea, boolean) IS
    'internal: ocx.verify()''s check of a stream''s end (the versions after its last event, its head)';
