-- Reads of issue 13, faster (docs/performance.md, "Issue 13 reads and
-- append_if"): ocx._hidden_through, which read_stream and last_event call in
-- their index condition, becomes C (src/reads.c, one probe of ocx.streams'
-- primary key).  As a SQL function whose body holds a subquery it was never
-- inlined, so every read ran it through the SQL function executor, parsing
-- and planning its body again.  Copy of sql/parts/20_read.sql.
CREATE OR REPLACE FUNCTION ocx._hidden_through(stream_id text) RETURNS bigint
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_hidden_through';
COMMENT ON FUNCTION ocx._hidden_through(text) IS
    'internal: the last soft-deleted version of a stream (0 when none): stream reads return only the versions after it';
