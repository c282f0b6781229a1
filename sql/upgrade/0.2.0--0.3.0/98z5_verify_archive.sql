-- ocx.verify() checks the archive of a partitioned log too (ocx.archive moves whole
-- partitions there; their events still chain, and seals still cover them): it
-- reported every archived version as missing.  See sql/parts/84_integrity.sql.
CREATE OR REPLACE FUNCTION ocx.verify(stream_id text DEFAULT NULL, public_key text DEFAULT NULL)
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
